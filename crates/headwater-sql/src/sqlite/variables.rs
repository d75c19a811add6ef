//! Variables. (SQLite)

use super::*;

#[async_trait]
impl VariableStore for SqliteStore {
    async fn set_variable(&self, v: &Variable) -> Result<Variable> {
        let writing = self.writer.lock().await;
        sqlx::query(
            "INSERT INTO variables (name, value, tags, created, updated) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT(name) DO UPDATE SET value = excluded.value, tags = excluded.tags, updated = excluded.updated",
        )
        .bind(&v.name)
        .bind(json_text(&v.value))
        .bind(json_text(&v.tags))
        .bind(micros(v.created))
        .bind(micros(v.updated))
        .execute(&self.pool)
        .await
        .db()?;
        drop(writing);
        self.read_variable(&v.name).await?.ok_or_else(|| corrupt("variable", "vanished after writing"))
    }

    async fn read_variable(&self, name: &str) -> Result<Option<Variable>> {
        let row =
            sqlx::query("SELECT * FROM variables WHERE name = ?").bind(name).fetch_optional(&self.pool).await.db()?;
        row.as_ref().map(variable_from).transpose()
    }

    async fn list_variables(&self) -> Result<Vec<Variable>> {
        let rows = sqlx::query("SELECT * FROM variables ORDER BY name").fetch_all(&self.pool).await.db()?;
        rows.iter().map(variable_from).collect()
    }

    async fn delete_variable(&self, name: &str) -> Result<bool> {
        let _writing = self.writer.lock().await;
        let done = sqlx::query("DELETE FROM variables WHERE name = ?").bind(name).execute(&self.pool).await.db()?;
        Ok(done.rows_affected() > 0)
    }
}

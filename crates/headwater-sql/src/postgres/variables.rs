//! Variables. (PostgreSQL)

use super::*;

#[async_trait]
impl VariableStore for PostgresStore {
    async fn set_variable(&self, v: &Variable) -> Result<Variable> {
        let row = sqlx::query(
            "INSERT INTO variables (name, value, tags, created, updated) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value, tags = excluded.tags, updated = excluded.updated \
             RETURNING *",
        )
        .bind(&v.name)
        .bind(Json(&v.value))
        .bind(Json(&v.tags))
        .bind(v.created)
        .bind(v.updated)
        .fetch_one(&self.pool)
        .await
        .db()?;
        variable_from(&row)
    }

    async fn read_variable(&self, name: &str) -> Result<Option<Variable>> {
        let row =
            sqlx::query("SELECT * FROM variables WHERE name = $1").bind(name).fetch_optional(&self.pool).await.db()?;
        row.as_ref().map(variable_from).transpose()
    }

    async fn list_variables(&self) -> Result<Vec<Variable>> {
        let rows = sqlx::query("SELECT * FROM variables ORDER BY name").fetch_all(&self.pool).await.db()?;
        rows.iter().map(variable_from).collect()
    }

    async fn delete_variable(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM variables WHERE name = $1").bind(name).execute(&self.pool).await.db()?;
        Ok(done.rows_affected() > 0)
    }
}

//! Block types and blocks, secrets sealed on the way in and opened on the way out. (SQLite)

use super::*;

#[async_trait]
impl BlockStore for SqliteStore {
    async fn register_block_types(&self, types: &[BlockType]) -> Result<()> {
        let _writing = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.db()?;
        for t in types {
            sqlx::query(
                "INSERT INTO block_types (slug, name, description, schema) VALUES (?, ?, ?, ?) \
                 ON CONFLICT(slug) DO UPDATE SET name = excluded.name, description = excluded.description, \
                 schema = excluded.schema",
            )
            .bind(&t.slug)
            .bind(&t.name)
            .bind(&t.description)
            .bind(json_text(&t.schema))
            .execute(&mut *tx)
            .await
            .db()?;
        }
        tx.commit().await.db()?;
        Ok(())
    }

    async fn list_block_types(&self) -> Result<Vec<BlockType>> {
        let rows = sqlx::query("SELECT * FROM block_types ORDER BY slug").fetch_all(&self.pool).await.db()?;
        rows.iter().map(block_type_from).collect()
    }

    async fn save_block(&self, doc: &BlockDocument) -> Result<BlockDocument> {
        let writing = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.db()?;
        let schema: Option<String> = sqlx::query_scalar("SELECT schema FROM block_types WHERE slug = ?")
            .bind(&doc.block_type)
            .fetch_optional(&mut *tx)
            .await
            .db()?;
        let schema =
            schema.map(|s| serde_json::from_str(&s)).transpose().map_err(|e| corrupt("block type schema", e))?;
        let t = block_type_for(doc, schema)?;
        let previous: Option<String> = sqlx::query_scalar("SELECT data FROM blocks WHERE name = ?")
            .bind(&doc.name)
            .fetch_optional(&mut *tx)
            .await
            .db()?;
        let previous: Option<serde_json::Value> =
            previous.map(|p| serde_json::from_str(&p)).transpose().map_err(|e| corrupt("block data", e))?;
        let data = seal_document(self.cipher.as_deref(), doc, &t, previous.as_ref())?;
        sqlx::query(
            "INSERT INTO blocks (name, block_type, data, created, updated) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT(name) DO UPDATE SET block_type = excluded.block_type, data = excluded.data, \
             updated = excluded.updated",
        )
        .bind(&doc.name)
        .bind(&doc.block_type)
        .bind(json_text(&data))
        .bind(micros(doc.created))
        .bind(micros(doc.updated))
        .execute(&mut *tx)
        .await
        .db()?;
        tx.commit().await.db()?;
        drop(writing);
        self.read_block(&doc.name, false).await?.ok_or_else(|| corrupt("block", "vanished after writing"))
    }

    async fn read_block(&self, name: &str, reveal: bool) -> Result<Option<BlockDocument>> {
        let row =
            sqlx::query("SELECT * FROM blocks WHERE name = ?").bind(name).fetch_optional(&self.pool).await.db()?;
        match row {
            Some(r) => Ok(Some(unseal_document(self.cipher.as_deref(), block_from(&r)?, reveal)?)),
            None => Ok(None),
        }
    }

    async fn list_blocks(&self) -> Result<Vec<BlockDocument>> {
        let rows = sqlx::query("SELECT * FROM blocks ORDER BY name").fetch_all(&self.pool).await.db()?;
        rows.iter().map(|r| unseal_document(None, block_from(r)?, false)).collect()
    }

    async fn delete_block(&self, name: &str) -> Result<bool> {
        let _writing = self.writer.lock().await;
        let done = sqlx::query("DELETE FROM blocks WHERE name = ?").bind(name).execute(&self.pool).await.db()?;
        Ok(done.rows_affected() > 0)
    }
}

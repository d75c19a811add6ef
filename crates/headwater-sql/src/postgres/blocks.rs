//! Block types and blocks, secrets sealed on the way in and opened on the way out. (PostgreSQL)

use super::*;

#[async_trait]
impl BlockStore for PostgresStore {
    async fn register_block_types(&self, types: &[BlockType]) -> Result<()> {
        let mut tx = self.pool.begin().await.db()?;
        for t in types {
            sqlx::query(
                "INSERT INTO block_types (slug, name, description, schema) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (slug) DO UPDATE SET name = excluded.name, description = excluded.description, \
                 schema = excluded.schema",
            )
            .bind(&t.slug)
            .bind(&t.name)
            .bind(&t.description)
            .bind(Json(&t.schema))
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
        let mut tx = self.pool.begin().await.db()?;
        let schema: Option<Json<serde_json::Value>> =
            sqlx::query_scalar("SELECT schema FROM block_types WHERE slug = $1")
                .bind(&doc.block_type)
                .fetch_optional(&mut *tx)
                .await
                .db()?;
        let t = block_type_for(doc, schema.map(|s| s.0))?;
        let previous: Option<Json<serde_json::Value>> =
            sqlx::query_scalar("SELECT data FROM blocks WHERE name = $1 FOR UPDATE")
                .bind(&doc.name)
                .fetch_optional(&mut *tx)
                .await
                .db()?;
        let data = seal_document(self.cipher.as_deref(), doc, &t, previous.as_ref().map(|p| &p.0))?;
        sqlx::query(
            "INSERT INTO blocks (name, block_type, data, created, updated) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (name) DO UPDATE SET block_type = excluded.block_type, data = excluded.data, \
             updated = excluded.updated",
        )
        .bind(&doc.name)
        .bind(&doc.block_type)
        .bind(Json(&data))
        .bind(doc.created)
        .bind(doc.updated)
        .execute(&mut *tx)
        .await
        .db()?;
        tx.commit().await.db()?;
        self.read_block(&doc.name, false).await?.ok_or_else(|| corrupt("block", "vanished after writing"))
    }

    async fn read_block(&self, name: &str, reveal: bool) -> Result<Option<BlockDocument>> {
        let row =
            sqlx::query("SELECT * FROM blocks WHERE name = $1").bind(name).fetch_optional(&self.pool).await.db()?;
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
        let done = sqlx::query("DELETE FROM blocks WHERE name = $1").bind(name).execute(&self.pool).await.db()?;
        Ok(done.rows_affected() > 0)
    }
}

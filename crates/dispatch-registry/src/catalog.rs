//! The cached model catalog: one JSON document, replaced whole on every refresh.

use serde_json::Value;

use crate::{Registry, RegistryError};

/// The catalog as last stored.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedCatalog {
    /// When it was fetched (Unix epoch milliseconds).
    pub fetched_at_ms: i64,
    /// The catalog document.
    pub catalog: Value,
}

impl Registry {
    /// Replaces the cached catalog.
    pub async fn store_catalog(
        &self,
        fetched_at_ms: i64,
        catalog: &Value,
    ) -> Result<(), RegistryError> {
        sqlx::query(
            "INSERT INTO model_catalog (id, fetched_at_ms, catalog) VALUES (1, ?, ?)
             ON CONFLICT (id) DO UPDATE SET fetched_at_ms = excluded.fetched_at_ms, catalog = excluded.catalog",
        )
        .bind(fetched_at_ms)
        .bind(catalog.to_string())
        .execute(&self.pool)
        .await
        .map_err(RegistryError::db_with(self.path(), "storing the model catalog"))?;
        Ok(())
    }

    /// The cached catalog, if one was ever stored.
    pub async fn cached_catalog(&self) -> Result<Option<CachedCatalog>, RegistryError> {
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT fetched_at_ms, catalog FROM model_catalog WHERE id = 1")
                .fetch_optional(&self.pool)
                .await
                .map_err(RegistryError::db_with(
                    self.path(),
                    "reading the model catalog",
                ))?;
        row.map(|(fetched_at_ms, text)| {
            serde_json::from_str(&text)
                .map(|catalog| CachedCatalog {
                    fetched_at_ms,
                    catalog,
                })
                .map_err(|err| {
                    RegistryError::corrupt(
                        self.path(),
                        format!("the cached model catalog is not JSON: {err}"),
                    )
                })
        })
        .transpose()
    }
}

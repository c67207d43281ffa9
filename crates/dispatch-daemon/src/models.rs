//! `models`: the model catalog from `model/list` (every page) and `config/read`, cached in the
//! registry as the output document itself.

use codex_app_server::AppServer;
use codex_app_server::protocol::{ConfigReadParams, Model, ModelListParams};
use dispatch_contract::types::{
    CatalogModel, ModelsInput, ModelsOutput, ModelsOutputCatalogState, ModelsOutputSource,
    ServiceTier,
};
use dispatch_contract::{DispatchError, Handle, Hint, operations};
use dispatch_registry::Registry;
use serde_json::Value;

use crate::convert::{now_ms, rfc3339, wire_name};
use crate::errors::app_server_error;
use crate::service::Service;

/// `models`: the live catalog (refreshing the cache), or with `no_refresh` the cached one.
impl Handle<ModelsInput> for Service {
    async fn handle(&self, input: ModelsInput) -> Result<ModelsOutput, DispatchError> {
        if input.no_refresh {
            return cached(self.registry()).await;
        }
        refresh(&self.app_server().server()?, self.registry()).await
    }
}

/// Pages of `model/list` fetched at the most, so a server that keeps answering with a cursor
/// cannot hold a call for ever.
const MAX_PAGES: usize = 50;

/// The alias of a service tier: its name in lower case when that is one word (`Fast` →
/// `fast`).
fn alias(tier_name: &str) -> Option<String> {
    let alias = tier_name.trim().to_lowercase();
    (!alias.is_empty() && alias.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .then_some(alias)
}

fn catalog_model(model: Model) -> CatalogModel {
    let service_tiers: Vec<ServiceTier> = model
        .service_tiers
        .into_iter()
        .map(|tier| ServiceTier {
            id: tier.id,
            name: tier.name,
            description: Some(tier.description).filter(|d| !d.is_empty()),
        })
        .collect();
    let aliases = service_tiers
        .iter()
        .filter_map(|tier| alias(&tier.name).map(|a| (a, tier.id.clone())))
        .collect();
    CatalogModel {
        id: model.id,
        display_name: model.display_name,
        is_default: model.is_default,
        hidden: Some(model.hidden),
        upgrade: model.upgrade,
        efforts: model
            .supported_reasoning_efforts
            .into_iter()
            .map(|e| wire_name(&e.reasoning_effort))
            .collect(),
        default_effort: Some(wire_name(&model.default_reasoning_effort)),
        input_modalities: model.input_modalities.iter().map(wire_name).collect(),
        service_tiers,
        aliases,
    }
}

/// Fetches the whole catalog, stores it, and returns it as `source: live`.
pub async fn refresh(
    server: &AppServer,
    registry: &Registry,
) -> Result<ModelsOutput, DispatchError> {
    let mut models = Vec::new();
    let mut cursor = None;
    for _ in 0..MAX_PAGES {
        let page = server
            .call(&ModelListParams {
                cursor: cursor.take(),
                include_hidden: Some(true),
                limit: None,
                model_provider: None,
            })
            .await
            .map_err(app_server_error)?;
        models.extend(page.data.into_iter().map(catalog_model));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let config = server
        .call(&ConfigReadParams {
            cwd: None,
            include_layers: None,
        })
        .await
        .map_err(app_server_error)?;
    let default_model = config
        .config
        .model
        .or_else(|| models.iter().find(|m| m.is_default).map(|m| m.id.clone()));
    let fetched_at_ms = now_ms();
    let output = ModelsOutput {
        source: ModelsOutputSource::Live,
        catalog_state: ModelsOutputCatalogState::Ready,
        default_model,
        fetched_at: Some(rfc3339(fetched_at_ms)),
        hint: None,
        models,
    };
    let document = serde_json::to_value(&output)
        .map_err(|err| DispatchError::internal(format!("encoding the catalog: {err}")))?;
    registry.store_catalog(fetched_at_ms, &document).await?;
    Ok(output)
}

/// The cached catalog as `source: cache`, or `catalog_state: empty` with a hint.
pub async fn cached(registry: &Registry) -> Result<ModelsOutput, DispatchError> {
    let Some(cached) = registry.cached_catalog().await? else {
        return Ok(ModelsOutput {
            source: ModelsOutputSource::Cache,
            catalog_state: ModelsOutputCatalogState::Empty,
            default_model: None,
            fetched_at: None,
            hint: Some(
                Hint::new("no catalog is cached yet: {0} fetches it")
                    .run(&operations::MODELS, serde_json::json!({}))
                    .to_string(),
            ),
            models: Vec::new(),
        });
    };
    let mut output: ModelsOutput = serde_json::from_value::<Value>(cached.catalog)
        .and_then(serde_json::from_value)
        .map_err(|err| {
            DispatchError::internal(format!("the cached catalog is unreadable: {err}"))
        })?;
    output.source = ModelsOutputSource::Cache;
    output.fetched_at = Some(rfc3339(cached.fetched_at_ms));
    Ok(output)
}

/// Model, effort and service tier as `thread/start` and `turn/start` take them.
pub struct Settings {
    /// The effort, validated.
    pub effort: Option<String>,
    /// The service tier id, aliases resolved.
    pub service_tier: Option<String>,
}

fn unavailable(what: &str, value: &str, choices: &[String]) -> DispatchError {
    DispatchError::new(
        dispatch_contract::ErrorCode::ModelUnavailable,
        format!(
            "unknown {what} `{value}`; choose one of: {}",
            choices.join(", ")
        ),
    )
    .with_details(serde_json::json!({ "field": what, "value": value, "choices": choices }))
}

/// Checks `model`, `effort` and `tier` against the cached catalog (fetched first if empty),
/// before anything is created. Omitted settings stay omitted.
pub async fn check_settings(
    server: &AppServer,
    registry: &Registry,
    model: Option<&str>,
    effort: Option<&str>,
    tier: Option<&str>,
) -> Result<Settings, DispatchError> {
    if model.is_none() && effort.is_none() && tier.is_none() {
        return Ok(Settings {
            effort: None,
            service_tier: None,
        });
    }
    let mut catalog = cached(registry).await?;
    if catalog.catalog_state == ModelsOutputCatalogState::Empty {
        catalog = refresh(server, registry).await?;
    }
    let ids: Vec<String> = catalog.models.iter().map(|m| m.id.clone()).collect();
    let chosen = match model {
        Some(id) => Some(
            catalog
                .models
                .iter()
                .find(|m| m.id == id)
                .ok_or_else(|| unavailable("model", id, &ids))?,
        ),
        None => catalog
            .default_model
            .as_deref()
            .and_then(|id| catalog.models.iter().find(|m| m.id == id))
            .or_else(|| catalog.models.iter().find(|m| m.is_default)),
    };
    let effort = match (effort, chosen) {
        (Some(effort), Some(m)) if !m.efforts.iter().any(|e| e == effort) => {
            return Err(unavailable("effort", effort, &m.efforts));
        }
        (effort, _) => effort.map(str::to_owned),
    };
    let service_tier = match (tier, chosen) {
        (Some(tier), Some(m)) => {
            if let Some(id) = m.aliases.get(tier) {
                Some(id.clone())
            } else if m.service_tiers.iter().any(|t| t.id == tier) {
                Some(tier.to_owned())
            } else {
                let mut choices: Vec<String> =
                    m.service_tiers.iter().map(|t| t.id.clone()).collect();
                choices.extend(m.aliases.keys().cloned());
                return Err(unavailable("service tier", tier, &choices));
            }
        }
        (tier, _) => tier.map(str::to_owned),
    };
    Ok(Settings {
        effort,
        service_tier,
    })
}

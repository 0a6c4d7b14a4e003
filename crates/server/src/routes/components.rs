//! `/v1/components`: upload, list and describe components.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use vow_runtime::{ComponentInfo, ExportInfo};

use crate::error::ApiError;
use crate::extract::{ApiQuery, ComponentPath, RawBody};
use crate::routes::AppState;

/// A component as the API shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ComponentBody {
    component_id: String,
    name: String,
    size: usize,
    sha256: String,
    exports: Vec<ExportBody>,
}

#[derive(Serialize)]
struct ExportBody {
    name: String,
    params: Vec<ParamBody>,
    results: Vec<String>,
}

#[derive(Serialize)]
struct ParamBody {
    name: String,
    #[serde(rename = "type")]
    ty: String,
}

impl From<ComponentInfo> for ComponentBody {
    fn from(info: ComponentInfo) -> Self {
        Self {
            component_id: info.id.to_string(),
            name: info.name,
            size: info.size,
            sha256: info.sha256,
            exports: info.exports.into_iter().map(ExportBody::from).collect(),
        }
    }
}

impl From<ExportInfo> for ExportBody {
    fn from(export: ExportInfo) -> Self {
        Self {
            name: export.name,
            params: export
                .params
                .into_iter()
                .map(|p| ParamBody {
                    name: p.name,
                    ty: p.ty,
                })
                .collect(),
            results: export.results,
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct UploadQuery {
    name: String,
}

/// `POST /v1/components?name=N`: compiles and adds a component.
#[tracing::instrument(skip_all, fields(name = %query.name, size = body.len()))]
pub(crate) async fn upload(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<UploadQuery>,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<ComponentBody>), ApiError> {
    if query.name.trim().is_empty() {
        return Err(ApiError::invalid("the component name is empty"));
    }
    let id = state
        .executor
        .add_component(&query.name, Vec::from(body))
        .await?;
    let info = state.executor.component(id)?;
    Ok((StatusCode::CREATED, Json(info.into())))
}

#[derive(Serialize)]
pub(crate) struct ComponentList {
    components: Vec<ComponentBody>,
}

/// `GET /v1/components`: every component, ordered by name.
pub(crate) async fn list(State(state): State<AppState>) -> Json<ComponentList> {
    Json(ComponentList {
        components: state
            .executor
            .components()
            .into_iter()
            .map(ComponentBody::from)
            .collect(),
    })
}

/// `GET /v1/components/{cid}`: one component.
pub(crate) async fn get(
    State(state): State<AppState>,
    ComponentPath(id): ComponentPath,
) -> Result<Json<ComponentBody>, ApiError> {
    Ok(Json(state.executor.component(id)?.into()))
}

//! `/v1/components`: upload, list and describe components.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use vow_runtime::{ComponentInfo, ExportInfo};

use crate::error::ApiError;
use crate::extract::{ApiQuery, ComponentParams, ComponentPath, RawBody};
use crate::openapi::responses::{E400, E404, E413, E422, E500};
use crate::routes::AppState;

/// A component and the functions it exports.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ComponentInfo)]
pub(crate) struct ComponentBody {
    #[schema(format = Uuid)]
    component_id: String,
    name: String,
    /// Size in bytes
    size: usize,
    /// SHA-256 of the component, hex
    sha256: String,
    exports: Vec<ExportBody>,
}

/// An exported function, with WIT types.
#[derive(Serialize, ToSchema)]
#[schema(as = Export)]
struct ExportBody {
    name: String,
    #[schema(inline)]
    params: Vec<ParamBody>,
    /// The WIT types of its results
    results: Vec<String>,
}

/// A parameter of an exported function.
#[derive(Serialize, ToSchema)]
struct ParamBody {
    name: String,
    /// WIT type
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

/// `?name=N`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct UploadQuery {
    /// Name of the component (not blank)
    #[param(min_length = 1, pattern = r"\S")]
    name: String,
}

/// `POST /v1/components?name=N`: compiles and adds a component.
#[utoipa::path(
    post,
    path = "/v1/components",
    operation_id = "uploadComponent",
    summary = "Compile and add a component",
    params(UploadQuery),
    request_body(content(
        (inline(RawBody) = "application/wasm"),
        (inline(RawBody) = "*/*"),
    )),
    responses(
        (status = 201, description = "success", body = ComponentBody),
        (status = 400, response = E400),
        (status = 413, response = E413),
        (status = 422, response = E422),
        (status = 500, response = E500),
    ),
    extensions(("x-vow-extension" = json!(true))),
)]
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

/// Every component.
#[derive(Serialize, ToSchema)]
pub(crate) struct ComponentList {
    components: Vec<ComponentBody>,
}

/// `GET /v1/components`: every component, ordered by name.
#[utoipa::path(
    get,
    path = "/v1/components",
    operation_id = "listComponents",
    summary = "Every component, by name",
    responses((status = 200, description = "success", body = ComponentList)),
    extensions(("x-vow-extension" = json!(true))),
)]
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
#[utoipa::path(
    get,
    path = "/v1/components/{cid}",
    operation_id = "getComponent",
    summary = "One component and its exports",
    params(ComponentParams),
    responses(
        (status = 200, description = "success", body = ComponentBody),
        (status = 400, response = E400),
        (status = 404, response = E404),
    ),
    extensions(("x-vow-extension" = json!(true))),
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    ComponentPath(id): ComponentPath,
) -> Result<Json<ComponentBody>, ApiError> {
    Ok(Json(state.executor.component(id)?.into()))
}

//! Control-plane operations: CreateFunction, GetFunction, GetFunctionConfiguration,
//! ListFunctions, UpdateFunctionCode, UpdateFunctionConfiguration, DeleteFunction,
//! GetAccountSettings — request shapes, validation and responses.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::json;

use super::Scope;
use super::{ApiError, SharedState, parse_json, read_body};
use std::sync::Arc;

use crate::document::FunctionDocument;
use crate::function::{self, FunctionRecord, FunctionSpec, LATEST, limits};
use crate::registry::ConfigPatch;

/// Largest code upload request: a 50 MB zip, base64-encoded, with room for the rest.
const CONTROL_BODY_MAX: usize = super::UPLOAD_BODY_MAX;
/// Lambda's quota for a zip uploaded directly.
const ZIP_MAX_BYTES: usize = 50 * 1024 * 1024;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CodeInput {
    zip_file: Option<String>,
    #[serde(rename = "S3Bucket")]
    s3_bucket: Option<String>,
    #[serde(rename = "S3Key")]
    s3_key: Option<String>,
    #[serde(rename = "S3ObjectVersion")]
    s3_object_version: Option<String>,
    image_uri: Option<String>,
    #[serde(rename = "SourceKMSKeyArn")]
    source_kms_key_arn: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EnvironmentInput {
    #[serde(default)]
    variables: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeadLetterInput {
    target_arn: Option<String>,
}

/// A dead-letter target must be an existing built-in queue; `""` clears it.
fn dead_letter_target(
    state: &SharedState,
    input: Option<DeadLetterInput>,
) -> Result<Option<String>, ApiError> {
    let Some(arn) = input.and_then(|d| d.target_arn) else {
        return Ok(None);
    };
    if arn.is_empty() {
        return Ok(Some(arn));
    }
    if state.targets.is_service(&arn, "sqs") && state.targets.check(&arn).is_ok() {
        Ok(Some(arn))
    } else {
        Err(ApiError::InvalidParameterValue(format!(
            "The provided target arn {arn} is invalid: the dead-letter target must be an existing queue (arn:aws:sqs:...:NAME)"
        )))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EphemeralStorageInput {
    size: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateFunctionRequest {
    function_name: String,
    runtime: Option<String>,
    role: Option<String>,
    handler: Option<String>,
    code: Option<CodeInput>,
    description: Option<String>,
    timeout: Option<i64>,
    memory_size: Option<i64>,
    package_type: Option<String>,
    publish: Option<bool>,
    dead_letter_config: Option<DeadLetterInput>,
    environment: Option<EnvironmentInput>,
    ephemeral_storage: Option<EphemeralStorageInput>,
    architectures: Option<Vec<String>>,
    layers: Option<Vec<String>>,
    tags: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    settings: crate::function_settings::SettingsInput,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateCodeRequest {
    zip_file: Option<String>,
    #[serde(rename = "S3Bucket")]
    s3_bucket: Option<String>,
    #[serde(rename = "S3Key")]
    s3_key: Option<String>,
    #[serde(rename = "S3ObjectVersion")]
    s3_object_version: Option<String>,
    image_uri: Option<String>,
    revision_id: Option<String>,
    architectures: Option<Vec<String>>,
    dry_run: Option<bool>,
    publish: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateConfigurationRequest {
    role: Option<String>,
    handler: Option<String>,
    description: Option<String>,
    timeout: Option<i64>,
    memory_size: Option<i64>,
    environment: Option<EnvironmentInput>,
    runtime: Option<String>,
    revision_id: Option<String>,
    ephemeral_storage: Option<EphemeralStorageInput>,
    layers: Option<Vec<String>>,
    dead_letter_config: Option<DeadLetterInput>,
    #[serde(flatten)]
    settings: crate::function_settings::SettingsInput,
}

/// `Marker` and `MaxItems`, the paging of Lambda's list operations.
#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(rename = "Marker")]
    pub(super) marker: Option<String>,
    #[serde(rename = "MaxItems")]
    pub(super) max_items: Option<String>,
}

pub(super) fn decode_zip(
    zip_file: Option<String>,
    s3_bucket: Option<String>,
    image_uri: Option<String>,
) -> Result<Vec<u8>, ApiError> {
    if image_uri.is_some() {
        return Err(ApiError::InvalidParameterValue(
            "Container images (ImageUri) are not supported by this server; upload a zip as ZipFile"
                .into(),
        ));
    }
    if s3_bucket.is_some() {
        return Err(ApiError::InvalidParameterValue(
            "Code from S3 (S3Bucket, S3Key) is not supported by this server; upload the zip as ZipFile".into(),
        ));
    }
    let encoded = zip_file.ok_or_else(|| {
        ApiError::InvalidParameterValue(
            "Please provide a source for function code (ZipFile).".into(),
        )
    })?;
    let zip = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| {
            ApiError::InvalidParameterValue(format!(
                "Could not decode ZipFile: it must be base64-encoded ({e})"
            ))
        })?;
    if zip.is_empty() {
        return Err(ApiError::InvalidParameterValue(
            "Could not unzip uploaded file. Please check your file, then try to upload again."
                .into(),
        ));
    }
    if zip.len() > ZIP_MAX_BYTES {
        return Err(ApiError::RequestTooLarge(format!(
            "Zipped size must be smaller than {ZIP_MAX_BYTES} bytes; got {}",
            zip.len()
        )));
    }
    Ok(zip)
}

/// Refuses code that would pass Lambda's unzipped limit together with its layers.
fn check_with_layers(
    state: &SharedState,
    code_unzipped: u64,
    layers: &[function::LayerRef],
) -> Result<(), ApiError> {
    if layers.is_empty() {
        return Ok(());
    }
    let mut total = code_unzipped;
    for layer in layers {
        total += state
            .registry
            .code_store()
            .unzipped_size(&layer.code.sha256_hex)
            .map_err(|e| ApiError::Service(format!("reading a layer's size failed: {e}")))?;
    }
    if total > crate::code::UNZIPPED_MAX_BYTES {
        return Err(ApiError::InvalidParameterValue(format!(
            "Function code combined with layers exceeds the maximum allowed size of {} bytes. \
             The actual size is {total} bytes.",
            crate::code::UNZIPPED_MAX_BYTES
        )));
    }
    Ok(())
}

fn unzipped(zip: &[u8]) -> Result<u64, ApiError> {
    crate::code::unzipped_size_of(zip).map_err(|e| ApiError::InvalidParameterValue(e.to_string()))
}

/// Lambda's limit on the layers of a function.
const LAYERS_MAX: usize = 5;

/// The layer versions `arns` name, in order: each must exist in this account and region,
/// at most five, and no layer twice.
fn resolve_layers(
    state: &SharedState,
    scope: &Scope,
    arns: Option<Vec<String>>,
) -> Result<Option<Vec<function::LayerRef>>, ApiError> {
    let Some(arns) = arns else {
        return Ok(None);
    };
    if arns.len() > LAYERS_MAX {
        return Err(ApiError::InvalidParameterValue(format!(
            "Cannot reference more than {LAYERS_MAX} layers."
        )));
    }
    let mut layers = Vec::with_capacity(arns.len());
    let mut seen = std::collections::HashSet::new();
    for arn in arns {
        let missing =
            || ApiError::InvalidParameterValue(format!("Layer version {arn} does not exist."));
        let Some((region, account, name, version)) = crate::layers::parse_version_arn(&arn) else {
            return Err(ApiError::InvalidParameterValue(format!(
                "1 validation error detected: Value '[{arn}]' at 'layers' failed to satisfy constraint: \
                 Member must satisfy constraint: [Member must satisfy regular expression pattern: \
                 arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\\d{{12}}:layer:[a-zA-Z0-9-_]+:[0-9]+]"
            )));
        };
        if account != scope.account_id || region != scope.region {
            return Err(missing());
        }
        if !seen.insert(name.to_string()) {
            return Err(ApiError::InvalidParameterValue(
                "Two different versions of the same layer are not allowed to be referenced in the same function. \
                 Please check the layers you provided."
                    .into(),
            ));
        }
        let code = state
            .layers
            .get(&scope.key(name))
            .and_then(|d| d.versions.get(&version).map(|v| v.code.clone()))
            .ok_or_else(missing)?;
        layers.push(function::LayerRef { arn, code });
    }
    Ok(Some(layers))
}

fn environment_of(
    input: Option<EnvironmentInput>,
) -> Result<Option<BTreeMap<String, String>>, ApiError> {
    match input {
        Some(env) => {
            function::validate_environment(&env.variables)?;
            Ok(Some(env.variables))
        }
        None => Ok(None),
    }
}

fn function_name(scope: &Scope, raw: &str) -> Result<String, ApiError> {
    let reference = super::function_ref(scope, raw)?;
    if let Some(q) = reference.qualifier.as_deref().filter(|q| *q != "$LATEST") {
        return Err(ApiError::InvalidParameterValue(format!(
            "Qualifier {q} is not valid here: only $LATEST exists until versions are published"
        )));
    }
    Ok(reference.name)
}

#[derive(Deserialize)]
pub struct QualifierQuery {
    #[serde(rename = "Qualifier")]
    qualifier: Option<String>,
}

/// The qualifier of a request: `?Qualifier=` wins over one in the path; empty is none.
fn qualifier_of(reference: &function::FunctionRef, query: Option<String>) -> Option<String> {
    query
        .filter(|q| !q.is_empty())
        .or_else(|| reference.qualifier.clone())
}

/// The function and the version that `raw` (plus an optional `?Qualifier=`) designates:
/// `$LATEST`, a published version, or an alias's version. Unknown ones are a 404.
pub(super) fn resolve_version(
    state: &SharedState,
    scope: &Scope,
    raw: &str,
    query_qualifier: Option<String>,
) -> Result<(Arc<FunctionDocument>, Arc<FunctionRecord>), ApiError> {
    let reference = super::function_ref(scope, raw)?;
    let qualifier = qualifier_of(&reference, query_qualifier);
    let name = &reference.name;
    let document = state
        .registry
        .require(&scope.key(name), || scope.function_arn(name))?;
    let record = match qualifier.as_deref() {
        None => Some(document.latest.clone()),
        Some(q) => {
            function::validate_qualifier(q)?;
            document
                .primary_version(q)
                .and_then(|v| document.version(&v).cloned())
        }
    };
    let record = record.ok_or_else(|| {
        ApiError::ResourceNotFound(format!(
            "Function not found: {}",
            state
                .arns
                .qualified_arn(name, qualifier.as_deref().unwrap_or(LATEST))
        ))
    })?;
    Ok((document, record))
}

fn too_large() -> ApiError {
    ApiError::RequestTooLarge(format!(
        "Request must be smaller than {CONTROL_BODY_MAX} bytes"
    ))
}

fn small_too_large() -> ApiError {
    ApiError::RequestTooLarge(format!(
        "Request must be smaller than {} bytes",
        super::SMALL_BODY_MAX
    ))
}

fn configuration(scope: &Scope, record: &FunctionRecord) -> serde_json::Value {
    record.configuration(scope)
}

pub async fn create(
    State(state): State<SharedState>,
    scope: Scope,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body, CONTROL_BODY_MAX, too_large).await?;
    let request: CreateFunctionRequest = parse_json(&body)?;
    // The request holds its own copy of the base64 zip: the body can go before it is decoded.
    drop(body);
    function::validate_name(&request.function_name)
        .or_else(|_| super::function_ref(&scope, &request.function_name).map(|_| ()))?;
    let named = super::function_ref(&scope, &request.function_name)?;
    if named.qualifier.is_some() {
        return Err(ApiError::InvalidParameterValue(format!(
            "A function is created unqualified: {} names a version or alias",
            request.function_name
        )));
    }
    let name = named.name;
    let mut settings = crate::function_settings::FunctionSettings::default();
    request.settings.apply(&mut settings)?;
    if request.package_type.as_deref().is_some_and(|p| p != "Zip") {
        return Err(ApiError::InvalidParameterValue(
            "PackageType Image is not supported by this server; use Zip".into(),
        ));
    }
    let layers = resolve_layers(&state, &scope, request.layers)?.unwrap_or_default();
    let (Some(runtime), Some(handler)) = (request.runtime, request.handler) else {
        return Err(ApiError::InvalidParameterValue(
            "Runtime and Handler are mandatory parameters for functions created with deployment packages.".into(),
        ));
    };
    function::validate_handler(&handler)?;
    let description = request.description.unwrap_or_default();
    function::validate_description(&description)?;
    let memory_mb = function::validate_memory(
        request
            .memory_size
            .unwrap_or(i64::from(limits::DEFAULT_MEMORY)),
    )?;
    let timeout_s = function::validate_timeout(
        request
            .timeout
            .unwrap_or(i64::from(limits::DEFAULT_TIMEOUT)),
    )?;
    let ephemeral_storage_mb = function::validate_ephemeral_storage(
        request
            .ephemeral_storage
            .map(|e| e.size)
            .unwrap_or(i64::from(limits::EPHEMERAL_MIN)),
    )?;
    let architecture =
        function::validate_architecture(request.architectures.as_deref().unwrap_or(&[]))?;
    let environment = environment_of(request.environment)?.unwrap_or_default();
    let tags = request.tags.unwrap_or_default();
    function::validate_tags(&tags)?;
    super::tags::check_network_available(&state, &tags)?;
    let code = request
        .code
        .ok_or_else(|| ApiError::InvalidParameterValue("Code is a required parameter".into()))?;
    if code
        .source_kms_key_arn
        .as_deref()
        .is_some_and(|a| !a.is_empty())
    {
        return Err(ApiError::InvalidParameterValue(
            "SourceKMSKeyArn is not supported by this server: code packages stay on its own disk"
                .into(),
        ));
    }
    let zip = decode_zip(
        code.zip_file,
        code.s3_bucket.or(code.s3_key).or(code.s3_object_version),
        code.image_uri,
    )?;
    check_with_layers(&state, unzipped(&zip)?, &layers)?;
    state.disk.check(
        crate::code::stored_bytes(&zip),
        "a code package and its unpacked files",
    )?;
    let spec = FunctionSpec {
        name,
        runtime,
        handler,
        role: request.role.unwrap_or_default(),
        description,
        memory_mb,
        timeout_s,
        ephemeral_storage_mb,
        environment,
        architecture,
        dead_letter_target: dead_letter_target(&state, request.dead_letter_config)?
            .filter(|t| !t.is_empty()),
        network: Default::default(),
        region: (!scope.is_home()).then(|| scope.region.clone()),
        layers,
        settings,
    };
    let name = spec.name.clone();
    let document = state.registry.create(spec, tags, zip).await?;
    tracing::info!(function = %name, runtime = %document.latest.spec.runtime, "function created");
    let published = publish_if(&state, &scope, &name, request.publish, &document).await;
    state.control.reconcile_current(&scope.key(&name));
    let record = published?;
    Ok((StatusCode::CREATED, Json(configuration(&scope, &record))).into_response())
}

pub async fn get(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
    Query(query): Query<QualifierQuery>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (document, record) = resolve_version(&state, &scope, &raw, query.qualifier)?;
    let name = document.name();
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1:9600");
    let mut body = json!({
        "Configuration": configuration(&scope, &record),
        "Code": {
            "RepositoryType": "S3",
            "Location": format!("http://{host}/shoal/v1/functions/{name}/code.zip?Qualifier={}", record.version),
        },
    });
    if let Some(reserved) = document.reserved_concurrency {
        body["Concurrency"] = json!({ "ReservedConcurrentExecutions": reserved });
    }
    if !document.tags.is_empty() {
        body["Tags"] = json!(document.tags);
    }
    Ok(Json(body))
}

pub async fn download_code(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
    Query(query): Query<QualifierQuery>,
) -> Result<Response, ApiError> {
    let (_, record) = resolve_version(&state, &scope, &raw, query.qualifier)?;
    let path = state
        .registry
        .code_store()
        .zip_path(&record.code.sha256_hex);
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| ApiError::Service(format!("reading the code package failed: {e}")))?;
    Ok(([("content-type", "application/zip")], bytes).into_response())
}

pub async fn get_configuration(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
    Query(query): Query<QualifierQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (_, record) = resolve_version(&state, &scope, &raw, query.qualifier)?;
    Ok(Json(configuration(&scope, &record)))
}

pub async fn list(
    State(state): State<SharedState>,
    scope: Scope,
    Query(query): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = max_items(query.max_items.as_deref())?;
    let (page, next) = state.registry.list(
        &scope,
        query.marker.as_deref().filter(|m| !m.is_empty()),
        limit,
    );
    let functions: Vec<_> = page
        .iter()
        .map(|d| configuration(&scope, &d.latest))
        .collect();
    let mut body = json!({ "Functions": functions });
    if let Some(next) = next {
        body["NextMarker"] = json!(next);
    }
    Ok(Json(body))
}

/// `$LATEST` of a function about to change, if `expected` (a RevisionId) still matches.
fn latest_for_update(
    state: &SharedState,
    scope: &Scope,
    name: &str,
    expected: Option<&str>,
) -> Result<Arc<FunctionRecord>, ApiError> {
    let current = state
        .registry
        .require(&scope.key(name), || scope.function_arn(name))?
        .latest
        .clone();
    check_revision(expected, &current)?;
    Ok(current)
}

/// Publishes a version when the request asked for it (`Publish: true`); the record to
/// answer with either way.
async fn publish_if(
    state: &SharedState,
    scope: &Scope,
    name: &str,
    publish: Option<bool>,
    document: &FunctionDocument,
) -> Result<Arc<FunctionRecord>, ApiError> {
    if publish == Some(true) {
        Ok(state
            .registry
            .publish_version(&scope.key(name), None, scope.function_arn(name))
            .await?)
    } else {
        Ok(document.latest.clone())
    }
}

fn check_revision(expected: Option<&str>, record: &FunctionRecord) -> Result<(), ApiError> {
    match expected {
        Some(rev) if rev != record.revision_id => Err(ApiError::PreconditionFailed(
            "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id".into(),
        )),
        _ => Ok(()),
    }
}

pub async fn update_code(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let name = function_name(&scope, &raw)?;
    let body = read_body(body, CONTROL_BODY_MAX, too_large).await?;
    let request: UpdateCodeRequest = parse_json(&body)?;
    // The request holds its own copy of the base64 zip: the body can go before it is decoded.
    drop(body);
    let current = latest_for_update(&state, &scope, &name, request.revision_id.as_deref())?;
    if let Some(architectures) = &request.architectures {
        function::validate_architecture(architectures)?;
    }
    let zip = decode_zip(
        request.zip_file,
        request
            .s3_bucket
            .or(request.s3_key)
            .or(request.s3_object_version),
        request.image_uri,
    )?;
    check_with_layers(&state, unzipped(&zip)?, &current.spec.layers)?;
    if request.dry_run == Some(true) {
        return Ok(Json(configuration(&scope, &current)));
    }
    state.disk.check(
        crate::code::stored_bytes(&zip),
        "a code package and its unpacked files",
    )?;
    let document = state
        .registry
        .update_code(&scope.key(&name), zip, scope.function_arn(&name))
        .await?;
    tracing::info!(function = %name, code_sha256 = %document.latest.code.sha256_b64, "function code updated");
    // The environments of the old code are retired even when publishing fails.
    let published = publish_if(&state, &scope, &name, request.publish, &document).await;
    state.control.reconcile_current(&scope.key(&name));
    let record = published?;
    Ok(Json(configuration(&scope, &record)))
}

pub async fn update_configuration(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
    body: Body,
) -> Result<Json<serde_json::Value>, ApiError> {
    let name = function_name(&scope, &raw)?;
    let body = read_body(body, super::SMALL_BODY_MAX, small_too_large).await?;
    let request: UpdateConfigurationRequest = parse_json(&body)?;
    let current = latest_for_update(&state, &scope, &name, request.revision_id.as_deref())?;
    let layers = resolve_layers(&state, &scope, request.layers)?;
    if let Some(layers) = &layers {
        let code = state
            .registry
            .code_store()
            .unzipped_size(&current.code.sha256_hex)
            .map_err(|e| ApiError::Service(format!("reading the code's size failed: {e}")))?;
        check_with_layers(&state, code, layers)?;
    }
    if let Some(handler) = &request.handler {
        function::validate_handler(handler)?;
    }
    if let Some(description) = &request.description {
        function::validate_description(description)?;
    }
    let mut settings = current.spec.settings.clone();
    request.settings.apply(&mut settings)?;
    let patch = ConfigPatch {
        runtime: request.runtime,
        handler: request.handler,
        role: request.role,
        description: request.description,
        memory_mb: request
            .memory_size
            .map(function::validate_memory)
            .transpose()?,
        timeout_s: request
            .timeout
            .map(function::validate_timeout)
            .transpose()?,
        ephemeral_storage_mb: request
            .ephemeral_storage
            .map(|e| function::validate_ephemeral_storage(e.size))
            .transpose()?,
        environment: environment_of(request.environment)?,
        dead_letter_target: dead_letter_target(&state, request.dead_letter_config)?,
        layers,
        settings: Some(settings),
    };
    let document = state
        .registry
        .update_configuration(&scope.key(&name), patch, scope.function_arn(&name))
        .await?;
    state.control.reconcile_current(&scope.key(&name));
    tracing::info!(function = %name, "function configuration updated");
    Ok(Json(configuration(&scope, &document.latest)))
}

pub async fn delete(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
    Query(query): Query<QualifierQuery>,
) -> Result<StatusCode, ApiError> {
    let reference = super::function_ref(&scope, &raw)?;
    let name = reference.name.clone();
    match qualifier_of(&reference, query.qualifier).as_deref() {
        None => {
            state
                .registry
                .delete(&scope.key(&name), scope.function_arn(&name))
                .await?;
            state.control.reconcile_current(&scope.key(&name));
            state.mappings.delete_for_function(&scope.key(&name));
            tracing::info!(function = %name, "function deleted");
        }
        Some(LATEST) => {
            return Err(ApiError::InvalidParameterValue(
                "$LATEST version cannot be deleted without deleting the function.".into(),
            ));
        }
        Some(q) if q.bytes().all(|b| b.is_ascii_digit()) => {
            state.registry.delete_version(&name, q, &scope).await?;
            state.control.reconcile_current(&scope.key(&name));
            tracing::info!(function = %name, version = %q, "function version deleted");
        }
        Some(q) => {
            function::validate_qualifier(q)?;
            return Err(ApiError::InvalidParameterValue(format!(
                "Deletion of aliases is not supported by DeleteFunction; use DeleteAlias for '{q}'."
            )));
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// PublishVersion: `$LATEST` becomes an immutable numbered version.
pub async fn publish_version(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct PublishRequest {
        code_sha256: Option<String>,
        description: Option<String>,
        revision_id: Option<String>,
    }
    let name = function_name(&scope, &raw)?;
    let body = read_body(body, super::SMALL_BODY_MAX, small_too_large).await?;
    let request: PublishRequest = parse_json(&body)?;
    let current = latest_for_update(&state, &scope, &name, request.revision_id.as_deref())?;
    if let Some(sha) = request
        .code_sha256
        .as_deref()
        .filter(|s| *s != current.code.sha256_b64)
    {
        return Err(ApiError::InvalidParameterValue(format!(
            "CodeSha256 ({sha}) is different from current CodeSha256 in $LATEST ({}). Please try again with the CodeSha256 in $LATEST.",
            current.code.sha256_b64
        )));
    }
    if let Some(description) = &request.description {
        function::validate_description(description)?;
    }
    let record = state
        .registry
        .publish_version(
            &scope.key(&name),
            request.description,
            scope.function_arn(&name),
        )
        .await?;
    state.control.reconcile_current(&scope.key(&name));
    tracing::info!(function = %name, version = %record.version, "version published");
    Ok((StatusCode::CREATED, Json(configuration(&scope, &record))).into_response())
}

/// ListVersionsByFunction: `$LATEST` first, then the published versions in order.
pub async fn list_versions(
    State(state): State<SharedState>,
    scope: Scope,
    Path(raw): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (_, document) = super::named_function(&state, &scope, &raw)?;
    let limit = max_items(query.max_items.as_deref())?;
    let all: Vec<&Arc<FunctionRecord>> = std::iter::once(&document.latest)
        .chain(document.versions.iter())
        .collect();
    let start = match query.marker.as_deref().filter(|m| !m.is_empty()) {
        Some(marker) => all
            .iter()
            .position(|r| r.version == marker)
            .map(|i| i + 1)
            .unwrap_or(all.len()),
        None => 0,
    };
    let page: Vec<_> = all.iter().skip(start).take(limit).collect();
    let mut body =
        json!({ "Versions": page.iter().map(|r| configuration(&scope, r)).collect::<Vec<_>>() });
    if start + page.len() < all.len()
        && let Some(last) = page.last()
    {
        body["NextMarker"] = json!(last.version);
    }
    Ok(Json(body))
}

/// `MaxItems` of a list operation: 1 to 10,000, default 50.
pub(super) fn max_items(raw: Option<&str>) -> Result<usize, ApiError> {
    match raw {
        None | Some("") => Ok(50),
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=10_000).contains(&n) => Ok(n),
            _ => Err(ApiError::InvalidParameterValue(format!(
                "1 validation error detected: Value '{raw}' at 'maxItems' failed to satisfy constraint: \
                 Member must have value between 1 and 10000"
            ))),
        },
    }
}

pub async fn account_settings(State(state): State<SharedState>) -> Json<serde_json::Value> {
    Json(json!({
        "AccountLimit": {
            "TotalCodeSize": 80_530_636_800u64,
            "CodeSizeUnzipped": crate::code::UNZIPPED_MAX_BYTES,
            "CodeSizeZipped": ZIP_MAX_BYTES,
            "ConcurrentExecutions": state.control.concurrency_limit(),
            "UnreservedConcurrentExecutions": (state.control.concurrency_limit() as u64)
                .saturating_sub(state.registry.reserved_total()),
        },
        "AccountUsage": {
            "TotalCodeSize": state.registry.total_code_size(),
            "FunctionCount": state.registry.count(),
        },
    }))
}

/// `GET /shoal/v1/runtimes/{runtime}`: what runs that runtime's functions here (the
/// interpreter and whether its version is the runtime's), so that deploy tools can say so.
pub async fn runtime_report(
    State(state): State<SharedState>,
    Path(runtime): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let report = state
        .registry
        .runtimes()
        .report(&runtime)
        .map_err(|e| ApiError::InvalidParameterValue(e.to_string()))?;
    Ok(Json(serde_json::json!(report)))
}

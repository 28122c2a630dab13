//! The OpenAPI document and the routes it describes: every `/api/` route is registered through
//! the OpenAPI router, so a route cannot exist without being documented. Then what the derive
//! macros cannot say is said on the generated document: a batch item is the single upsert's
//! body plus its `id`, a request's recipients are limited by a setting, a recipient's address
//! has the team member's pattern, an accepted request links to its reading, and template
//! variables are any JSON without U+0000 (a recursive schema).

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::require_bearer;
use super::error::ErrorBody;
use super::{
    alerts, analytics, approvals, audit, campaigns, email_requests, notifications, people, revenue,
    team_members, templates,
};
use crate::state::AppState;
use crate::store::Outcome;

#[derive(OpenApi)]
#[openapi(
    info(title = "campaign-sync internal API", description = "Campaigns and team members in from the Campaign Manager. Bearer API_TOKEN on every route."),
    modifiers(&BearerAuth),
    tags((name = "campaigns"), (name = "team-members"), (name = "email"), (name = "slack"), (name = "analytics"), (name = "people"), (name = "audit"), (name = "alerts")),
    components(schemas(ErrorBody, Outcome))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The `/api` routes (behind the token) and their OpenAPI document.
pub fn routes(state: AppState) -> (Router<AppState>, Value) {
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(campaigns::put_campaign, campaigns::get_campaign))
        .routes(routes!(campaigns::deactivate_campaign))
        .routes(routes!(campaigns::list_campaigns))
        .routes(routes!(campaigns::batch_campaigns))
        .routes(routes!(
            team_members::put_team_member,
            team_members::get_team_member
        ))
        .routes(routes!(team_members::batch_team_members))
        .routes(routes!(
            notifications::post_notification,
            notifications::list_notifications
        ))
        .routes(routes!(notifications::get_notification))
        .routes(routes!(approvals::post_approval, approvals::list_approvals))
        .routes(routes!(approvals::get_approval))
        .routes(routes!(analytics::email))
        .routes(routes!(analytics::team))
        .routes(routes!(analytics::top_content))
        .routes(routes!(analytics::campaign_metrics))
        .routes(routes!(revenue::put_revenue))
        .routes(routes!(templates::list_templates))
        .routes(routes!(people::get_person, people::erase_person))
        .routes(routes!(audit::list_audit))
        .routes(routes!(alerts::list_alerts))
        .merge(
            OpenApiRouter::new()
                .routes(routes!(
                    email_requests::post_email_request,
                    email_requests::list_email_requests
                ))
                .routes(routes!(email_requests::get_email_request))
                .routes(routes!(email_requests::cancel_email_request))
                // Large lists: this route has its own limit (the outer one is the default).
                .layer(axum::extract::DefaultBodyLimit::max(
                    state.settings.email.body_limit_bytes,
                )),
        )
        .split_for_parts();
    let openapi = finish(&openapi, state.settings.email.max_recipients);
    let router = router.layer(axum::middleware::from_fn_with_state(
        state,
        require_api_token,
    ));
    (router, openapi)
}

async fn require_api_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match require_bearer(
        request.headers(),
        state.settings.security.api_token.as_ref(),
    ) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// The document, as JSON, with those additions (utoipa's model has no schema without a
/// `type`, so the JSON is what is served). A test reads the served document for each.
pub(super) fn finish(openapi: &utoipa::openapi::OpenApi, max_recipients: usize) -> Value {
    let mut doc = serde_json::to_value(openapi).unwrap_or_default();
    batch_body(
        &mut doc,
        "/api/campaigns:batch",
        "CampaignInput",
        "Campaign",
    );
    batch_body(
        &mut doc,
        "/api/team-members:batch",
        "TeamMemberInput",
        "TeamMember",
    );
    if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
        schemas.remove("BatchRequest");
        schemas.insert("TemplateValues".into(), template_values());
        schemas.insert("TemplateValue".into(), template_value());
    }
    let email = doc
        .pointer("/components/schemas/TeamMemberInput/properties/email/pattern")
        .cloned();
    if let (Some(pattern), Some(recipient)) = (
        email,
        doc.pointer_mut("/components/schemas/RecipientInput/properties/email"),
    ) {
        recipient["pattern"] = pattern;
    }
    if let Some(recipients) =
        doc.pointer_mut("/components/schemas/EmailRequestInput/properties/recipients")
    {
        recipients["maxItems"] = json!(max_recipients);
    }
    link_request_to_its_reading(&mut doc);
    doc
}

/// An accepted request's, notification's or approval's id is the `{id}` of its reading (an
/// OpenAPI link, which generated clients and stateful testers follow).
fn link_request_to_its_reading(doc: &mut Value) {
    let links = [
        (
            "/paths/~1api~1email-requests/post/responses/202",
            "GetEmailRequest",
            "get_email_request",
            "/id",
            "The accepted request, with its counts and recipients.",
        ),
        (
            "/paths/~1api~1notifications/post/responses/202",
            "GetNotification",
            "get_notification",
            "/id",
            "The notification, with its deliveries.",
        ),
        (
            "/paths/~1api~1approvals/post/responses/201",
            "GetApproval",
            "get_approval",
            "/approvalId",
            "The approval, with its status.",
        ),
        (
            "/paths/~1api~1approvals/post/responses/200",
            "GetApproval",
            "get_approval",
            "/approvalId",
            "The approval, with its status.",
        ),
    ];
    for (at, name, operation, field, description) in links {
        if let Some(answer) = doc.pointer_mut(at) {
            answer["links"] = json!({ name: {
                "operationId": operation,
                "parameters": { "id": format!("$response.body#{field}") },
                "description": description
            } });
        }
    }
}

/// `POST {path}`'s body: `{"items": [<input> + "id"]}`, 1 to 1,000 items.
fn batch_body(doc: &mut Value, path: &str, input: &str, name: &str) {
    let Some(mut item) = doc["components"]["schemas"].get(input).cloned() else {
        return;
    };
    item["properties"]["id"] = json!({
        "type": "string",
        "description": "The Campaign Manager's id: 1–128 of letters, digits, _ . : -",
        "pattern": "^[A-Za-z0-9_.:-]{1,128}$"
    });
    if let Some(required) = item["required"].as_array_mut() {
        required.insert(0, json!("id"));
    } else {
        item["required"] = json!(["id"]);
    }
    item["description"] = json!(format!(
        "One record of a batch: its `id` and the fields of `PUT` (`{input}`)."
    ));
    let item_name = format!("{name}BatchItem");
    let batch_name = format!("{name}Batch");
    let batch = json!({
        "type": "object",
        "description": "Up to 1,000 records, each id once, stored in one transaction.",
        "required": ["items"],
        "additionalProperties": false,
        "properties": {
            "items": {
                "type": "array",
                "minItems": 1,
                "maxItems": crate::store::batch::MAX_ITEMS,
                "items": { "$ref": format!("#/components/schemas/{item_name}") }
            }
        }
    });
    doc["components"]["schemas"][&item_name] = item;
    doc["components"]["schemas"][&batch_name] = batch;
    let pointer = format!(
        "/paths/{}/post/requestBody/content/application~1json/schema",
        path.replace('~', "~0").replace('/', "~1")
    );
    if let Some(schema) = doc.pointer_mut(&pointer) {
        *schema = json!({ "$ref": format!("#/components/schemas/{batch_name}") });
    }
}

/// A recipient's variables: an object of [`template_value`]s.
fn template_values() -> Value {
    json!({
        "type": "object",
        "description": "Template variables (`{{var:name}}`): names and values without U+0000, at most 16 KiB of JSON.",
        "propertyNames": { "pattern": "^[^\u{0}]*$" },
        "additionalProperties": { "$ref": "#/components/schemas/TemplateValue" }
    })
}

/// Any JSON value whose strings and keys hold no U+0000 (the keywords apply by type).
fn template_value() -> Value {
    json!({
        "description": "Any JSON value; strings and keys without U+0000.",
        "pattern": "^[^\u{0}]*$",
        "propertyNames": { "pattern": "^[^\u{0}]*$" },
        "items": { "$ref": "#/components/schemas/TemplateValue" },
        "additionalProperties": { "$ref": "#/components/schemas/TemplateValue" }
    })
}

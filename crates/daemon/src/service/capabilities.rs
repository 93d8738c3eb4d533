//! What an installed plugin can be asked to do, read from its declaration: a dispatch route whose
//! access type the plugin does not provide (a model route on a tool-only plugin) or whose model type
//! its model provider does not list is refused here, before any session is opened, with an error
//! naming the unsupported action instead of whatever the plugin's SDK would raise.
//!
//! Owns only that check; it must not talk to runtimes or the database.

use dify_protocol::access::{AccessType, DispatchRoute, FieldValue, ModelTypeRule, RouteFields};
use dify_protocol::message::PluginSessionError;
use dify_protocol::{DaemonError, ErrorType, PluginDeclaration};
use serde_json::{Map, Value};

/// `error_type` of the inner error of an action the plugin does not implement.
pub const UNSUPPORTED_ACTION_ERROR: &str = "PluginActionNotSupportedError";

/// Why a route cannot be served by a plugin, per its declaration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsupported {
    /// The plugin declares no provider of the route's kind.
    #[error("plugin {plugin_id} does not support `{action}`: it declares no {kind} provider")]
    AccessType { plugin_id: String, action: &'static str, kind: &'static str },
    /// The plugin's model provider does not list the requested model type.
    #[error("plugin {plugin_id} does not support `{action}` for model type `{model_type}`: its model provider supports {supported}")]
    ModelType { plugin_id: String, action: &'static str, model_type: String, supported: String },
}

impl Unsupported {
    /// A `PluginInvokeError` whose message is the inner `{args, error_type, message}` JSON, shaped as
    /// the errors plugins raise themselves, so callers parse both alike.
    pub fn to_daemon_error(&self) -> DaemonError {
        let inner = PluginSessionError {
            error_type: UNSUPPORTED_ACTION_ERROR.to_string(),
            message: self.to_string(),
            args: Value::Object(Map::new()),
        };
        DaemonError::new(ErrorType::PluginInvokeError, inner.to_sorted_json())
    }
}

/// The kind of provider an access type needs, when the declaration tells it unambiguously. OAuth
/// and dynamic parameters serve several provider kinds and are left to the plugin.
fn provided(declaration: &PluginDeclaration, access: AccessType) -> Option<(bool, &'static str)> {
    match access {
        AccessType::Tool => Some((declaration.tool.is_some(), "tool")),
        AccessType::Model => Some((declaration.model.is_some(), "model")),
        AccessType::Endpoint => Some((declaration.endpoint.is_some(), "endpoint")),
        AccessType::AgentStrategy => Some((declaration.agent_strategy.is_some(), "agent strategy")),
        AccessType::Datasource => Some((declaration.datasource.is_some(), "datasource")),
        AccessType::Trigger => Some((declaration.trigger.is_some(), "trigger")),
        AccessType::Oauth | AccessType::DynamicParameter => None,
    }
}

/// Checks `route` (with its request `data`) against what `declaration` provides.
pub fn check_route(
    plugin_id: &str,
    declaration: &PluginDeclaration,
    route: &DispatchRoute,
    data: &(impl RouteFields + ?Sized),
) -> Result<(), Unsupported> {
    if let Some((false, kind)) = provided(declaration, route.access_type) {
        return Err(Unsupported::AccessType { plugin_id: plugin_id.to_string(), action: route.action, kind });
    }
    let typed = matches!(route.model_type, ModelTypeRule::Exactly(_) | ModelTypeRule::Valid);
    if let (true, Some(model)) = (typed, declaration.model.as_ref()) {
        let requested = match data.field("model_type") {
            FieldValue::Str(text) => text,
            _ => Default::default(),
        };
        let supported = &model.supported_model_types;
        if !supported.is_empty() && !requested.is_empty() && !supported.iter().any(|t| *t == *requested) {
            return Err(Unsupported::ModelType {
                plugin_id: plugin_id.to_string(),
                action: route.action,
                model_type: requested.to_string(),
                supported: supported.join(", "),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dify_protocol::access::find_dispatch_route;

    fn declaration(extra: Value) -> PluginDeclaration {
        let mut manifest = serde_json::json!({
            "version": "0.0.1", "type": "plugin", "author": "a", "name": "p", "label": {"en_US": "p"},
            "description": {"en_US": "p"}, "icon": "i.svg", "created_at": "2024-01-01T00:00:00Z",
            "resource": {"memory": 1048576}, "plugins": {}, "meta": {"version": "0.0.1", "arch": ["amd64"],
            "runner": {"language": "python", "version": "3.12", "entrypoint": "main"}}
        });
        manifest.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        PluginDeclaration::from_json(manifest.to_string().as_bytes()).expect("declaration")
    }

    #[test]
    fn routes_need_their_provider_kind() {
        let tool_only = declaration(serde_json::json!({"tool": {"identity": {"author": "a", "name": "t",
            "label": {"en_US": "t"}, "description": {"en_US": "t"}, "icon": "i.svg"}}}));
        let llm = find_dispatch_route("/llm/invoke").unwrap();
        let error = check_route("a/p", &tool_only, llm, &Map::new()).unwrap_err();
        assert_eq!(error.to_string(), "plugin a/p does not support `invoke_llm`: it declares no model provider");
        let inner: Value = serde_json::from_str(&error.to_daemon_error().message).unwrap();
        assert_eq!(inner["error_type"], "PluginActionNotSupportedError");
        assert!(check_route("a/p", &tool_only, find_dispatch_route("/tool/invoke").unwrap(), &Map::new()).is_ok());
        let oauth = find_dispatch_route("/oauth/get_authorization_url").unwrap();
        assert!(check_route("a/p", &tool_only, oauth, &Map::new()).is_ok());
    }
}

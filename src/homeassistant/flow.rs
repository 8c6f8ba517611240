//! The Generic Camera's config and options flows over HA's REST API, sans-IO: `Flow` says which
//! request to send next and reads each reply (home-assistant.md §7, §8). The form answers are
//! built from the `data_schema` HA sends, so both shapes work — 2024.3 (flat fields, then
//! `user_confirm_still`) and 2026.2 (an `advanced` section, then `user_confirm`) — and any later
//! one that only adds optional fields. No sockets here: `client.rs` carries the requests.

use serde_json::{Map, Value, json};

use super::source::CameraSource;

/// Frames per second HA uses to refresh the still image (the Generic Camera's default).
const FRAMERATE: f64 = 2.0;
/// More steps than any known flow shape has: a loop guard.
const MAX_STEPS: usize = 6;

/// An HTTP request to HA's REST API; `path` follows `/api/`.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub body: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Delete => "DELETE",
        }
    }
}

/// One field of a flow form (`voluptuous_serialize` output).
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub required: bool,
    pub has_default: bool,
    /// `description.suggested_value`: what an options flow shows as the current value.
    pub suggested: Option<Value>,
    /// A section's fields (`type: expandable`), answered as a nested object.
    pub section: Option<Vec<Field>>,
}

/// What one reply of a flow says.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Form {
        flow_id: String,
        step_id: String,
        fields: Vec<Field>,
        /// `(field or "base", error key)`.
        errors: Vec<(String, String)>,
    },
    /// `create_entry`: a config flow names the new entry; an options flow saved the options.
    Created {
        entry_id: Option<String>,
    },
    Aborted {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FlowError {
    /// HA tested the URLs and refused them (the form came back with errors).
    #[error("Home Assistant refused the camera at step `{step}`: {}", explain_all(.errors))]
    Rejected {
        step: String,
        errors: Vec<(String, String)>,
    },
    #[error("Home Assistant aborted the flow: {reason}")]
    Aborted { reason: String },
    #[error(
        "Home Assistant's form `{step}` asks for `{field}`, which this bridge does not know \
         (a newer Generic Camera?)"
    )]
    UnknownField { step: String, field: String },
    #[error("HTTP {status} from {path}: {detail}")]
    Http {
        status: u16,
        path: String,
        detail: String,
    },
    #[error("unexpected reply from {path}: {detail}")]
    BadReply { path: String, detail: String },
    #[error("the flow did not finish within {MAX_STEPS} steps (last step `{step}`)")]
    TooManySteps { step: String },
}

impl FlowError {
    /// Worth trying again later: HA tested the stream or still and it failed (intercom busy,
    /// bridge starting), or HA had a server error. Refusals of the request itself are not.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Rejected { errors, .. } => errors.iter().any(|(_, code)| {
                matches!(
                    code.as_str(),
                    "timeout"
                        | "unable_still_load"
                        | "unable_still_load_server_error"
                        | "unable_still_load_no_image"
                        | "stream_io_error"
                        | "stream_no_route_to_host"
                        | "unknown"
                )
            }),
            Self::Http { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// HA's English text for the Generic Camera's error keys (its strings.json), plus the key.
pub fn explain(code: &str) -> String {
    let text = match code {
        "timeout" => {
            "no stream within HA's 30 s limit (is the bridge's RTSP port reachable from HA?)"
        }
        "unable_still_load" => "HA could not load the still image (host, port or authentication)",
        "unable_still_load_auth" => "the still image needs other credentials (401/403)",
        "unable_still_load_not_found" => "the still image URL was not found (404)",
        "unable_still_load_server_error" => "the still image URL answered a server error",
        "unable_still_load_no_image" => "the still image URL returned no image",
        "invalid_still_image" => "the still image URL did not return an image",
        "stream_no_route_to_host" => "HA found no route to the RTSP host",
        "stream_io_error" => "input/output error on the RTSP stream",
        "stream_not_permitted" => "operation not permitted on the RTSP stream",
        "stream_unauthorised" => "the RTSP stream refused the credentials",
        "stream_not_set_up" => {
            "HA's `stream` integration is not set up (add `stream:` or `default_config:`)"
        }
        "malformed_url" => "malformed URL",
        "relative_url" => "relative URL",
        "already_exists" => "a camera with these URLs already exists",
        "no_still_image_or_stream_url" => "neither a still image nor a stream URL",
        _ => return code.to_owned(),
    };
    format!("{text} ({code})")
}

fn explain_all(errors: &[(String, String)]) -> String {
    errors
        .iter()
        .map(|(field, code)| format!("{field}: {}", explain(code)))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Reads a flow reply body (`type` = form / create_entry / abort).
pub fn parse_reply(path: &str, body: &Value) -> Result<Reply, FlowError> {
    let bad = |detail: String| FlowError::BadReply {
        path: path.to_owned(),
        detail,
    };
    let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_owned);
    match text("type").as_deref() {
        Some("form") => {
            let flow_id = text("flow_id").ok_or_else(|| bad("form without flow_id".into()))?;
            let step_id = text("step_id").ok_or_else(|| bad("form without step_id".into()))?;
            let fields = match body.get("data_schema") {
                Some(Value::Array(items)) => fields(items),
                None | Some(Value::Null) => Vec::new(),
                Some(other) => return Err(bad(format!("data_schema is not a list: {other}"))),
            };
            let errors = match body.get("errors") {
                Some(Value::Object(map)) => map
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("?").to_owned()))
                    .collect(),
                _ => Vec::new(),
            };
            Ok(Reply::Form {
                flow_id,
                step_id,
                fields,
                errors,
            })
        }
        Some("create_entry") => {
            let entry_id = body
                .get("result")
                .and_then(|r| r.get("entry_id"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            Ok(Reply::Created { entry_id })
        }
        Some("abort") => Ok(Reply::Aborted {
            reason: text("reason").unwrap_or_else(|| "?".into()),
        }),
        other => Err(bad(format!("flow result type {other:?}"))),
    }
}

fn fields(items: &[Value]) -> Vec<Field> {
    items
        .iter()
        .filter_map(|f| {
            let name = f.get("name")?.as_str()?.to_owned();
            let section =
                (f.get("type").and_then(Value::as_str) == Some("expandable")).then(|| {
                    match f.get("schema") {
                        Some(Value::Array(inner)) => fields(inner),
                        _ => Vec::new(),
                    }
                });
            Some(Field {
                name,
                required: f.get("required").and_then(Value::as_bool) == Some(true),
                has_default: f.get("default").is_some(),
                suggested: f
                    .get("description")
                    .and_then(|d| d.get("suggested_value"))
                    .filter(|v| !v.is_null())
                    .cloned(),
                section,
            })
        })
        .collect()
}

/// Our answer to a form: every field we know, filled from `want`; unknown optional fields and
/// fields with a default are left to HA; an unknown required field is an error.
pub fn answer(step: &str, fields: &[Field], want: &CameraSource) -> Result<Value, FlowError> {
    let mut out = Map::new();
    for f in fields {
        if let Some(inner) = &f.section {
            out.insert(f.name.clone(), answer(step, inner, want)?);
            continue;
        }
        let value = match f.name.as_str() {
            "stream_source" => Some(json!(want.stream_source)),
            "still_image_url" => Some(json!(want.still_image_url)),
            "username" => want.username.as_ref().map(|u| json!(u)),
            "password" => want.password.as_ref().map(|p| json!(p)),
            "authentication" => Some(json!(want.authentication.as_str())),
            "rtsp_transport" => Some(json!("tcp")),
            "framerate" => Some(json!(FRAMERATE)),
            "verify_ssl" => Some(json!(true)),
            "limit_refetch_to_url_change" | "use_wallclock_as_timestamps" => Some(json!(false)),
            "content_type" => Some(json!("image/jpeg")),
            "confirmed_ok" => Some(json!(true)),
            _ if f.required && !f.has_default => {
                return Err(FlowError::UnknownField {
                    step: step.to_owned(),
                    field: f.name.clone(),
                });
            }
            _ => None,
        };
        if let Some(v) = value {
            out.insert(f.name.clone(), v);
        }
    }
    Ok(Value::Object(out))
}

/// What an existing entry is set to, read from its options form's suggested values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntrySettings {
    pub stream_source: Option<String>,
    pub still_image_url: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub authentication: Option<String>,
    pub rtsp_transport: Option<String>,
}

/// Reads the current settings out of an options form (`init`), sections included.
pub fn current_settings(fields: &[Field]) -> EntrySettings {
    let mut s = EntrySettings::default();
    read_into(fields, &mut s);
    s
}

fn read_into(fields: &[Field], s: &mut EntrySettings) {
    for f in fields {
        if let Some(inner) = &f.section {
            read_into(inner, s);
            // A section's values may also come as the section's own suggested object.
            if let Some(Value::Object(map)) = &f.suggested {
                for (k, v) in map {
                    set(s, k, v);
                }
            }
            continue;
        }
        if let Some(v) = &f.suggested {
            set(s, &f.name, v);
        }
    }
}

fn set(s: &mut EntrySettings, name: &str, v: &Value) {
    let Some(text) = v.as_str().map(str::to_owned) else {
        return;
    };
    let slot = match name {
        "stream_source" => &mut s.stream_source,
        "still_image_url" => &mut s.still_image_url,
        "username" => &mut s.username,
        "password" => &mut s.password,
        "authentication" => &mut s.authentication,
        "rtsp_transport" => &mut s.rtsp_transport,
        _ => return,
    };
    *slot = Some(text);
}

/// The settings of `current` that differ from `want` (names only: the log must not show a
/// password). Empty: the entry is up to date.
pub fn differences(current: &EntrySettings, want: &CameraSource) -> Vec<&'static str> {
    let mut out = Vec::new();
    let empty_is_none = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    if current.stream_source.as_deref() != Some(want.stream_source.as_str()) {
        out.push("stream_source");
    }
    if current.still_image_url.as_deref() != Some(want.still_image_url.as_str()) {
        out.push("still_image_url");
    }
    if empty_is_none(&current.username) != want.username {
        out.push("username");
    }
    if empty_is_none(&current.password) != want.password {
        out.push("password");
    }
    if want.username.is_some()
        && current.authentication.as_deref() != Some(want.authentication.as_str())
    {
        out.push("authentication");
    }
    if current
        .rtsp_transport
        .as_deref()
        .is_some_and(|t| t != "tcp")
    {
        out.push("rtsp_transport");
    }
    out
}

/// Which flow: a new entry, or new options for an existing one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowKind {
    Create,
    Update { entry_id: String },
}

/// One flow run, sans-IO: `start()`, then feed each reply to `on_reply` until it says `Done`.
#[derive(Debug)]
pub struct Flow {
    kind: FlowKind,
    want: CameraSource,
    steps: usize,
    last_step: String,
    flow_id: Option<String>,
}

/// What to do after a reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Send(Request),
    /// Finished; the entry id for `Create` (HA always names it), `None` for `Update`.
    Done {
        entry_id: Option<String>,
    },
}

impl Flow {
    pub fn new(kind: FlowKind, want: CameraSource) -> Self {
        Self {
            kind,
            want,
            steps: 0,
            last_step: "start".into(),
            flow_id: None,
        }
    }

    fn base(&self) -> &'static str {
        match self.kind {
            FlowKind::Create => "config/config_entries/flow",
            FlowKind::Update { .. } => "config/config_entries/options/flow",
        }
    }

    pub fn start(&self) -> Request {
        let handler = match &self.kind {
            FlowKind::Create => "generic",
            FlowKind::Update { entry_id } => entry_id,
        };
        Request {
            method: Method::Post,
            path: self.base().to_owned(),
            body: Some(json!({"handler": handler, "show_advanced_options": false})),
        }
    }

    /// The request that abandons the flow (HA keeps an unfinished flow, and a config flow's
    /// preview stream, until then).
    pub fn abort_request(&self) -> Option<Request> {
        self.flow_id.as_ref().map(|id| Request {
            method: Method::Delete,
            path: format!("{}/{id}", self.base()),
            body: None,
        })
    }

    pub fn on_reply(&mut self, path: &str, status: u16, body: &Value) -> Result<Next, FlowError> {
        if !(200..300).contains(&status) {
            return Err(http_error(path, status, body));
        }
        self.steps += 1;
        match parse_reply(path, body)? {
            Reply::Form {
                flow_id,
                step_id,
                fields,
                errors,
            } => {
                self.flow_id = Some(flow_id.clone());
                if !errors.is_empty() {
                    return Err(FlowError::Rejected {
                        step: step_id,
                        errors,
                    });
                }
                if self.steps > MAX_STEPS || step_id == self.last_step {
                    // The same form again without errors would loop forever.
                    return Err(FlowError::TooManySteps { step: step_id });
                }
                let body = answer(&step_id, &fields, &self.want)?;
                self.last_step = step_id;
                Ok(Next::Send(Request {
                    method: Method::Post,
                    path: format!("{}/{flow_id}", self.base()),
                    body: Some(body),
                }))
            }
            Reply::Created { entry_id } => {
                self.flow_id = None;
                match (&self.kind, entry_id) {
                    (FlowKind::Create, None) => Err(FlowError::BadReply {
                        path: path.to_owned(),
                        detail: "create_entry without result.entry_id".into(),
                    }),
                    (_, entry_id) => Ok(Next::Done { entry_id }),
                }
            }
            Reply::Aborted { reason } => {
                self.flow_id = None;
                Err(FlowError::Aborted { reason })
            }
        }
    }
}

/// An HTTP error reply as a `FlowError`, with HA's `message` when it sends one.
pub fn http_error(path: &str, status: u16, body: &Value) -> FlowError {
    // `{"message": "..."}`, or voluptuous' `{"errors": {"base": ["extra keys not allowed ..."]}}`.
    let errors = body.get("errors").and_then(Value::as_object).map(|m| {
        m.values()
            .flat_map(|v| match v {
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect::<Vec<_>>(),
                Value::String(s) => vec![s.as_str()],
                _ => Vec::new(),
            })
            .collect::<Vec<_>>()
            .join("; ")
    });
    let detail = body
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or(errors)
        .unwrap_or_else(|| body.to_string().chars().take(200).collect());
    FlowError::Http {
        status,
        path: path.to_owned(),
        detail,
    }
}

#[cfg(test)]
#[path = "flow_tests.rs"]
mod tests;

//! [`EventLog`]: session lifecycle events as JSON log lines.

use crate::hooks::{Hooks, SessionEvent};

/// [`Hooks`] that log every session event as one JSON line through the `log`
/// facade, at level info with target `edge_session::events`:
///
/// ```json
/// {"handle":"<64 hex>","kind":"created","source":"edge-session","user":null}
/// {"handle":"<new>","kind":"regenerated","previous":"<old>","source":"edge-session","user":"u-1"}
/// {"handle":"<64 hex>","kind":"destroyed","source":"edge-session","user":"u-1"}
/// {"kind":"logged_out_everywhere","sessions":3,"source":"edge-session","user":"u-1"}
/// ```
///
/// Handles are the non-secret session ids (`x-session-id`); no token is
/// ever logged. A `user` of `destroyed` is null when the session ended by
/// its own logout.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventLog;

impl EventLog {
    /// The JSON line logged for `event`.
    pub fn line(event: &SessionEvent) -> String {
        // Keys in alphabetical order: the same line with or without
        // serde_json's `preserve_order`.
        let (source, kind) = ("edge-session", event.kind());
        let line = match event {
            SessionEvent::Created { handle, user } | SessionEvent::Destroyed { handle, user } => {
                serde_json::json!({
                    "handle": handle.as_str(),
                    "kind": kind,
                    "source": source,
                    "user": user,
                })
            }
            SessionEvent::Regenerated { old, new, user } => serde_json::json!({
                "handle": new.as_str(),
                "kind": kind,
                "previous": old.as_str(),
                "source": source,
                "user": user,
            }),
            SessionEvent::LoggedOutEverywhere { user, sessions } => serde_json::json!({
                "kind": kind,
                "sessions": sessions,
                "source": source,
                "user": user,
            }),
            SessionEvent::BindingMismatch {
                handle,
                user,
                reason,
            } => serde_json::json!({
                "handle": handle.as_str(),
                "kind": kind,
                "reason": reason,
                "source": source,
                "user": user,
            }),
        };
        line.to_string()
    }
}

impl Hooks for EventLog {
    fn on_event(&self, event: &SessionEvent) {
        log::info!(target: "edge_session::events", "{}", Self::line(event));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lines_are_one_json_object() {
        let token = crate::SessionToken::generate(None);
        let handle = token.handle();
        let line = EventLog::line(&SessionEvent::Created {
            handle: handle.clone(),
            user: None,
        });
        assert_eq!(
            line,
            format!(
                r#"{{"handle":"{}","kind":"created","source":"edge-session","user":null}}"#,
                handle.as_str()
            )
        );
        let line = EventLog::line(&SessionEvent::LoggedOutEverywhere {
            user: "zoë \"z\"".to_owned(),
            sessions: 3,
        });
        assert_eq!(
            line,
            r#"{"kind":"logged_out_everywhere","sessions":3,"source":"edge-session","user":"zoë \"z\""}"#
        );
    }
}

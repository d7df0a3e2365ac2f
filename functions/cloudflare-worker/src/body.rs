//! The bodies: the client's upload on its way to the origin, and
//! `SESSION_MAX_BODY_BYTES` on bodies of undeclared length. The bytes stay
//! in the runtime: workerd's own byte streams carry them, and where a count
//! is needed a JavaScript `TransformStream` reads each chunk's length; no
//! chunk enters wasm.
//!
//! An upload is piped into a `FixedLengthStream` of its `Content-Length` (the
//! origin then gets that `Content-Length`) or an `IdentityTransformStream`,
//! which tells when the client's body has been handed on whole: the origin
//! timeout counts from then, so a slow upload is not cut. If the client's
//! body breaks off before the origin has answered, the origin request is
//! aborted: workerd would otherwise end a chunked body cleanly and the origin
//! take a truncated upload as whole.
//!
//! A declared `Content-Length` over the limit is refused by the gateway
//! before anything is sent (and workerd holds a body to its declared length).
//! A body without one is counted as it streams: an upload past the limit
//! aborts the origin request (the origin sees a broken request, the client
//! gets `413 body_too_large`); a download past it stops there, its stream
//! errored (workerd then ends a chunked response as if it were whole: the
//! client gets a short body, not a broken one).

use wasm_bindgen::prelude::wasm_bindgen;
use worker::js_sys::{Object, Promise, Reflect};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::{AbortController, ReadableStream};

#[wasm_bindgen(inline_js = r#"
function capped(stream, limit, what, onOver) {
  let seen = 0;
  return stream.pipeThrough(new TransformStream({
    transform(chunk, controller) {
      seen += chunk.byteLength;
      if (seen > limit) {
        console.warn(`edge-session: ${what} cut off: over the limit of ${limit} bytes (SESSION_MAX_BODY_BYTES)`);
        onOver();
        controller.error(new RangeError(`${what} over the limit of ${limit} bytes`));
      } else {
        controller.enqueue(chunk);
      }
    },
  }));
}

export function forwardBody(body, length, limit, abort) {
  const state = { answered: false, over: false, broken: false };
  let source = body;
  if (length === undefined && limit !== undefined) {
    source = capped(body, limit, 'request body', () => {
      state.over = true;
      // Before the stream errors: the origin must see a broken request.
      if (!state.answered) abort.abort(new RangeError('request body over the limit'));
    });
  }
  const stream = length === undefined ? new IdentityTransformStream() : new FixedLengthStream(length);
  const ended = source.pipeTo(stream.writable).catch((error) => {
    if (state.over || state.answered) return;
    state.broken = true;
    abort.abort(error);
  });
  return { body: stream.readable, ended, state };
}

export function capResponse(body, limit) {
  return capped(body, limit, 'origin response body', () => {});
}
"#)]
extern "C" {
    #[wasm_bindgen(catch, js_name = forwardBody)]
    fn forward_body(
        body: &ReadableStream,
        length: Option<f64>,
        limit: Option<f64>,
        abort: &AbortController,
    ) -> Result<Object, JsValue>;

    #[wasm_bindgen(catch, js_name = capResponse)]
    fn cap_response(body: &ReadableStream, limit: f64) -> Result<ReadableStream, JsValue>;
}

// Byte counts as JavaScript numbers: exact up to 2^53, far beyond any body.
#[allow(clippy::cast_precision_loss)]
fn number(bytes: u64) -> f64 {
    bytes as f64
}

/// A client's body on its way to the origin.
#[derive(Debug)]
pub struct Upload {
    /// What the origin request sends.
    pub body: ReadableStream,
    state: JsValue,
}

impl Upload {
    /// `body`, `length` its `Content-Length` if declared, held to `limit`
    /// when it has none; `abort` aborts the origin request. Also answers a
    /// future that settles (never fails) once the client's body has been
    /// handed on whole, or broke off. `None` if the runtime refuses (then
    /// `body` goes as it is).
    pub fn new(
        body: &ReadableStream,
        length: Option<u64>,
        limit: Option<u64>,
        abort: &AbortController,
    ) -> Option<(Self, JsFuture)> {
        let forwarded = forward_body(body, length.map(number), limit.map(number), abort).ok()?;
        let get = |name: &str| Reflect::get(&forwarded, &JsValue::from_str(name)).ok();
        let ended = JsFuture::from(get("ended")?.dyn_into::<Promise>().ok()?);
        let upload = Self {
            body: get("body")?.dyn_into().ok()?,
            state: get("state")?,
        };
        Some((upload, ended))
    }

    /// The origin has answered: from now on nothing aborts its request.
    pub fn answered(&self) {
        self.set("answered", true);
    }

    /// True when the body went past the limit (the request was aborted).
    pub fn over(&self) -> bool {
        self.flag("over")
    }

    /// True when the client's body broke off (the request was aborted).
    pub fn broken(&self) -> bool {
        self.flag("broken")
    }

    fn flag(&self, name: &str) -> bool {
        Reflect::get(&self.state, &JsValue::from_str(name))
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    }

    fn set(&self, name: &str, value: bool) {
        drop(Reflect::set(
            &self.state,
            &JsValue::from_str(name),
            &JsValue::from_bool(value),
        ));
    }
}

/// An origin response body of undeclared length held to `limit` bytes: past
/// it the stream errors (the client sees the body break off). `None` if the
/// runtime refuses (then the body goes unlimited).
pub fn capped_response(body: &ReadableStream, limit: u64) -> Option<ReadableStream> {
    cap_response(body, number(limit)).ok()
}

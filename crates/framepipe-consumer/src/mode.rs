//! How frame bodies are turned into handler items: raw, validated, or typed (SPEC §7.2).

use std::fmt;
use std::marker::PhantomData;

use bytes::Bytes;
use framepipe_codec::parse_json_body;
use serde::de::{DeserializeOwned, IgnoredAny};

/// Turns a frame body into the item handed to the handler. Implemented by [`Raw`], [`Validate`] and
/// [`Json`]; runs on the handler's side of the queue, so the queue holds wire bytes and its budget
/// is exact.
pub trait Mode: Send + Sync + 'static {
    /// What the handler receives.
    type Item: Send + 'static;

    /// A short name for logs and reports (`raw`, `validate`, `typed`).
    fn name(&self) -> &'static str;

    /// Whether [`decode_workers`](crate::Builder::decode_workers) should run this mode's decode on
    /// a worker thread (SPEC §7.8). `true` by default; [`Raw`] says `false`: it has no work to move.
    fn offload(&self) -> bool {
        true
    }

    /// Decodes one body. `frame` (0-based) and `offset` (of its header in the stream) label errors.
    ///
    /// An error here is frame-local: the frame is dropped and the connection goes on (SPEC §4.1).
    fn decode(
        &self,
        body: Bytes,
        frame: u64,
        offset: u64,
    ) -> Result<Self::Item, framepipe_codec::Error>;
}

/// Bodies as they arrived, unchecked. Costs nothing: the `Bytes` is split off the read buffer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Raw;

impl Mode for Raw {
    type Item = Bytes;

    fn name(&self) -> &'static str {
        "raw"
    }

    fn offload(&self) -> bool {
        false
    }

    fn decode(&self, body: Bytes, _: u64, _: u64) -> Result<Bytes, framepipe_codec::Error> {
        Ok(body)
    }
}

/// Bodies checked to be one well-formed JSON value (SPEC §1.2) without building it, then handed on
/// as raw bytes. Costs one pass of serde_json over the body and no allocation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Validate;

impl Mode for Validate {
    type Item = Bytes;

    fn name(&self) -> &'static str {
        "validate"
    }

    fn decode(
        &self,
        body: Bytes,
        frame: u64,
        offset: u64,
    ) -> Result<Bytes, framepipe_codec::Error> {
        parse_json_body::<IgnoredAny>(&body, frame, offset)?;
        Ok(body)
    }
}

/// Bodies parsed into `T` with serde_json (SPEC §1.2). Costs a full parse and `T`'s allocations.
pub struct Json<T>(PhantomData<fn() -> T>);

impl<T> Json<T> {
    /// The typed mode for `T`.
    pub fn new() -> Self {
        Json(PhantomData)
    }
}

impl<T> Default for Json<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for Json<T> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for Json<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Json<{}>", std::any::type_name::<T>())
    }
}

impl<T: DeserializeOwned + Send + 'static> Mode for Json<T> {
    type Item = T;

    fn name(&self) -> &'static str {
        "typed"
    }

    fn decode(&self, body: Bytes, frame: u64, offset: u64) -> Result<T, framepipe_codec::Error> {
        parse_json_body(&body, frame, offset)
    }
}

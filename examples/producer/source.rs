//! What the `producer` example sends: reference records (serialized per frame, the default), a
//! payload file's bytes as every frame's body (`--payload`, serialized once), or a JSON Lines file,
//! one frame per line (`--jsonl`).

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;

use crate::support::lines::{json_frames, LineCounts, LineOptions};

/// The longest `--jsonl` line: the consumer's default frame length limit (SPEC §2).
const MAX_LINE: usize = framepipe::codec::limits::DEFAULT_MAX_FRAME_LENGTH as usize;

/// Raw bodies to send instead of reference records.
pub(crate) struct RawSource {
    /// The bodies, read as the queue has room.
    pub(crate) bodies: BoxStream<'static, Bytes>,
    /// What a `--jsonl` file held (`None` for `--payload`).
    pub(crate) lines: Option<Arc<LineCounts>>,
    /// What the summary calls it.
    pub(crate) what: String,
}

/// `--payload FILE`: the file's bytes, checked once to be one JSON value, as the body of each of
/// `frames` frames. Costs one read and one parse up front; each frame is then a reference count.
pub(crate) fn payload(path: &Path, frames: u64) -> Result<RawSource, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("--payload {}: {e}", path.display()))?;
    serde_json::from_slice::<serde::de::IgnoredAny>(&bytes)
        .map_err(|e| format!("--payload {}: not one JSON value: {e}", path.display()))?;
    let body = Bytes::from(bytes.trim_ascii().to_vec());
    let what = format!(
        "{} frames of {} ({} bytes)",
        frames,
        path.display(),
        body.len()
    );
    let bodies = futures::stream::repeat(body).take(frames as usize).boxed();
    Ok(RawSource {
        bodies,
        lines: None,
        what,
    })
}

/// `--jsonl FILE`: each line a frame, checked to be one JSON value; reading stops at the first bad
/// line (reported with its number), after the lines before it are sent.
pub(crate) async fn jsonl(path: &Path) -> Result<RawSource, String> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("--jsonl {}: {e}", path.display()))?;
    let counts = Arc::new(LineCounts::default());
    let options = LineOptions {
        lines_per_frame: 1,
        skip_bad: false,
        max_line: MAX_LINE,
    };
    let bodies = json_frames(file, options, counts.clone(), "producer").boxed();
    Ok(RawSource {
        bodies,
        lines: Some(counts),
        what: format!("the lines of {}", path.display()),
    })
}

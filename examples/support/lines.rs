//! JSON Lines in: `producer --jsonl` and `fpcat send`. A line becomes a frame body (or one element
//! of a batch of `lines_per_frame`), after it is checked to be one JSON value. Lines are read only
//! as the stream is polled, and the senders poll it only when the queue has room, so a slow network
//! or consumer stops the reading of the input (backpressure reaches stdin).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use futures::Stream;
use serde::de::IgnoredAny;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

/// How lines are read and grouped.
#[derive(Debug, Clone, Copy)]
pub struct LineOptions {
    /// Lines per frame: 1 sends each line as it is; N > 1 sends N lines as one JSON array.
    pub lines_per_frame: usize,
    /// Go on after a bad line (it is reported and not sent) instead of stopping there.
    pub skip_bad: bool,
    /// The longest line accepted; a longer one is a bad line.
    pub max_line: usize,
}

/// What the reader saw, readable while it runs and after.
#[derive(Debug, Default)]
pub struct LineCounts {
    /// Lines read (blank ones included).
    pub lines: AtomicU64,
    /// JSON values taken for sending.
    pub values: AtomicU64,
    /// Lines that were not one JSON value (or too long, or unreadable): reported, not sent.
    pub bad: AtomicU64,
    /// The input could not be read to its end (an I/O error).
    pub read_error: AtomicU64,
}

struct Reader<R> {
    input: BufReader<R>,
    line: Vec<u8>,
    options: LineOptions,
    counts: Arc<LineCounts>,
    who: &'static str,
    batch: BytesMut,
    in_batch: usize,
    done: bool,
}

/// The frame bodies made from the JSON Lines of `input`. A bad line is reported on stderr as
/// `WHO: line N: why` and not sent; without `skip_bad` the stream ends there, after the batch
/// gathered before it. Blank lines are skipped. `counts` says what happened.
pub fn json_frames<R: AsyncRead + Unpin>(
    input: R,
    options: LineOptions,
    counts: Arc<LineCounts>,
    who: &'static str,
) -> impl Stream<Item = Bytes> {
    let reader = Reader {
        input: BufReader::with_capacity(64 * 1024, input),
        line: Vec::new(),
        options,
        counts,
        who,
        batch: BytesMut::new(),
        in_batch: 0,
        done: false,
    };
    futures::stream::unfold(reader, |mut r| async move {
        let body = r.next_body().await?;
        Some((body, r))
    })
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// The next frame body; `None` at the end of the input (or of what may be sent).
    async fn next_body(&mut self) -> Option<Bytes> {
        while !self.done {
            let line = match self.read_line().await {
                Ok(None) => {
                    self.done = true;
                    break;
                }
                Ok(Some(line)) => line,
                Err(e) => {
                    let number = self.counts.lines.load(Relaxed) + 1;
                    eprintln!("{}: reading line {number}: {e}", self.who);
                    self.counts.read_error.fetch_add(1, Relaxed);
                    self.done = true;
                    break;
                }
            };
            let number = self.counts.lines.fetch_add(1, Relaxed) + 1;
            let Some(len) = line else {
                let max = self.options.max_line;
                self.bad(number, &format!("longer than the {max}-byte limit"));
                continue;
            };
            let line = std::mem::take(&mut self.line);
            let value = line[..len].trim_ascii();
            if value.is_empty() {
                self.line = line;
                continue;
            }
            let body = match serde_json::from_slice::<IgnoredAny>(value) {
                Ok(_) => self.take(value),
                Err(e) => {
                    self.bad(number, &e.to_string());
                    None
                }
            };
            self.line = line;
            if body.is_some() {
                return body;
            }
        }
        self.flush()
    }

    /// Reads one line into `self.line`: `Some(Some(len))`, `Some(None)` for a line over the limit
    /// (skipped to its end without keeping it), `None` at the end of the input.
    async fn read_line(&mut self) -> std::io::Result<Option<Option<usize>>> {
        self.line.clear();
        let max = self.options.max_line;
        let limit = max as u64 + 1;
        let n = (&mut self.input)
            .take(limit)
            .read_until(b'\n', &mut self.line)
            .await?;
        if n == 0 {
            return Ok(None);
        }
        if self.line.last() == Some(&b'\n') || n <= max {
            return Ok(Some(Some(n)));
        }
        // Over the limit: skip to the end of the line.
        loop {
            let available = self.input.fill_buf().await?;
            if available.is_empty() {
                break;
            }
            match available.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.input.consume(i + 1);
                    break;
                }
                None => {
                    let all = available.len();
                    self.input.consume(all);
                }
            }
        }
        Ok(Some(None))
    }

    fn bad(&mut self, number: u64, why: &str) {
        self.counts.bad.fetch_add(1, Relaxed);
        let what = if self.options.skip_bad {
            "not sent"
        } else {
            "not sent; stopping (--skip-bad goes on)"
        };
        eprintln!("{}: line {number}: {why}; {what}", self.who);
        if !self.options.skip_bad {
            self.done = true;
        }
    }

    /// Adds a valid value; a whole frame's body once `lines_per_frame` are in.
    fn take(&mut self, value: &[u8]) -> Option<Bytes> {
        self.counts.values.fetch_add(1, Relaxed);
        if self.options.lines_per_frame <= 1 {
            return Some(Bytes::copy_from_slice(value));
        }
        self.batch
            .put_u8(if self.in_batch == 0 { b'[' } else { b',' });
        self.batch.extend_from_slice(value);
        self.in_batch += 1;
        if self.in_batch == self.options.lines_per_frame {
            return self.flush();
        }
        None
    }

    /// The batch gathered so far as a frame body, if any.
    fn flush(&mut self) -> Option<Bytes> {
        if self.in_batch == 0 {
            return None;
        }
        self.batch.put_u8(b']');
        self.in_batch = 0;
        Some(self.batch.split().freeze())
    }
}

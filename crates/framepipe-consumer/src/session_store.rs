//! Where a session's position lives across consumer restarts (SPEC §10.3).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use framepipe_codec::session::{ResumeSecret, SessionId, SECRET_LEN};

/// What a store keeps of a session (SPEC §10.3): its position and the resume secret of the producer
/// that owns it, so that after a restart only that producer resumes it (SPEC §10.4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredSession {
    /// Every frame of the session numbered below this was handled.
    pub next: u64,
    /// The session's resume secret. Keep it as you would a password: whoever has it and the
    /// session's id can resume the session.
    pub secret: ResumeSecret,
}

/// A session's position, kept where it survives the consumer's process: the sequence number of the
/// first frame of the session not yet handled, with the session's resume secret (SPEC §10.3).
///
/// Give one to [`Consumer::session_store`](crate::Consumer::session_store): the consumer loads the
/// position when a producer resumes a session it does not hold in memory, and the application
/// commits it with [`Delivery::commit`](crate::Delivery::commit) after handling frames; the
/// consumer acknowledges only what was committed. Delivery across a restart is then exactly-once
/// when the position commits atomically with the handler's output (a store over the same database
/// transaction as the output), and at-least-once otherwise: output written before a crash and
/// committed after it is repeated.
///
/// Calls block (a file store syncs to disk); from async code, call them in
/// `tokio::task::spawn_blocking` or accept the wait.
pub trait SessionStore: Send + Sync + 'static {
    /// What was committed for `session`, or `None` if nothing was.
    fn load(&self, session: SessionId) -> io::Result<Option<StoredSession>>;

    /// Records, durably, that every frame of `session` numbered below `stored.next` was handled,
    /// and the session's secret. Returns once it would survive a crash of the process or the
    /// machine.
    fn commit(&self, session: SessionId, stored: &StoredSession) -> io::Result<()>;

    /// Forgets `session` (it ended, or expired).
    fn forget(&self, session: SessionId) -> io::Result<()>;
}

/// A [`SessionStore`] of one small file per session in a directory (SPEC §10.3.2).
///
/// The files hold the sessions' resume secrets: they are created readable by their owner only
/// (mode 0600 on Unix); keep the directory private.
///
/// Each commit writes the position to a temporary file, syncs it, renames it over the session's
/// file and syncs the directory: after a crash (even `kill -9` mid-commit, or a power cut) the file
/// holds the previous position or the new one, never a mix. Costs two `fsync`s per commit (about a
/// millisecond on an SSD, more on a disk): commit every N frames, not every frame, when that is
/// too slow. Commits are serialised within one store.
///
/// ```
/// use framepipe_consumer::{FileStore, SessionStore, StoredSession};
/// use framepipe_codec::session::{ResumeSecret, SessionId};
///
/// let dir = std::env::temp_dir().join(format!("framepipe-doc-store-{}", std::process::id()));
/// let store = FileStore::open(&dir)?;
/// let session = SessionId::from_u128(42);
/// assert_eq!(store.load(session)?, None);
/// let stored = StoredSession { next: 1_000, secret: ResumeSecret::from_bytes([7; 16]) };
/// store.commit(session, &stored)?;
/// assert_eq!(FileStore::open(&dir)?.load(session)?, Some(stored)); // as after a restart
/// store.forget(session)?;
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
    commits: Mutex<()>,
}

/// The first word of a position file: the format and its version.
const FORMAT: &str = "framepipe-session-position/2";
/// The format before resume secrets (SPEC §10.3.2): read as an error that says what to do.
const FORMAT_1: &str = "framepipe-session-position/1";

impl FileStore {
    /// A store in `dir`, created if missing.
    pub fn open(dir: impl AsRef<Path>) -> io::Result<FileStore> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)?;
        Ok(FileStore {
            dir,
            commits: Mutex::new(()),
        })
    }

    /// The directory the store keeps its files in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, session: SessionId) -> PathBuf {
        self.dir.join(format!("{}.position", session.to_hex()))
    }
}

impl SessionStore for FileStore {
    /// Reads the session's file; a file that is not a position of this session is `InvalidData`,
    /// naming the file.
    fn load(&self, session: SessionId) -> io::Result<Option<StoredSession>> {
        let path = self.path(session);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let invalid = |why: String| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} {why}", path.display()),
            )
        };
        if text.starts_with(FORMAT_1) {
            return Err(invalid(format!(
                "was written by a framepipe without resume secrets ({FORMAT_1}): its session cannot \
                 be resumed safely; delete the file to let the producer begin the session again"
            )));
        }
        parse(&text, session).map(Some).ok_or_else(|| {
            invalid(format!(
                "is not a framepipe session position (expected \"{FORMAT} {} <next> <secret>\")",
                session.to_hex()
            ))
        })
    }

    fn commit(&self, session: SessionId, stored: &StoredSession) -> io::Result<()> {
        let _one_at_a_time = self.commits.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.path(session);
        let tmp = path.with_extension("position.tmp");
        let mut file = private_file(&tmp)?;
        let secret: String = stored
            .secret
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        writeln!(
            file,
            "{FORMAT} {} {} {secret}",
            session.to_hex(),
            stored.next
        )?;
        file.sync_all()?;
        fs::rename(&tmp, &path)?;
        File::open(&self.dir)?.sync_all()
    }

    fn forget(&self, session: SessionId) -> io::Result<()> {
        match fs::remove_file(self.path(session)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => File::open(&self.dir)?.sync_all(),
        }
    }
}

/// A new file at `path` (truncated if there), readable and writable by its owner only.
fn private_file(path: &Path) -> io::Result<File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// What `text` holds, if it is one line `FORMAT session next secret` for this session.
fn parse(text: &str, session: SessionId) -> Option<StoredSession> {
    let line = text.strip_suffix('\n')?;
    let mut words = line.split(' ');
    let (format, id, next, secret) = (words.next()?, words.next()?, words.next()?, words.next()?);
    if format != FORMAT || id != session.to_hex() || words.next().is_some() {
        return None;
    }
    if secret.len() != 2 * SECRET_LEN || !secret.is_ascii() {
        return None;
    }
    let mut bytes = [0u8; SECRET_LEN];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(&secret[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(StoredSession {
        next: next.parse().ok()?,
        secret: ResumeSecret::from_bytes(bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(name: &str) -> FileStore {
        let dir =
            std::env::temp_dir().join(format!("framepipe-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        FileStore::open(dir).unwrap()
    }

    fn at(next: u64) -> StoredSession {
        StoredSession {
            next,
            secret: ResumeSecret::from_bytes(*b"\x00\x01secret-bytes\xfe\xff"),
        }
    }

    #[test]
    fn commits_replace_the_position_and_forget_removes_it() {
        let s = store("replace");
        let id = SessionId::from_u128(7);
        s.commit(id, &at(5)).unwrap();
        s.commit(id, &at(9)).unwrap();
        assert_eq!(s.load(id).unwrap(), Some(at(9)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(s.path(id)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "the file holds the session's secret");
        }
        assert_eq!(s.load(SessionId::from_u128(8)).unwrap(), None);
        s.forget(id).unwrap();
        s.forget(id).unwrap(); // twice is fine
        assert_eq!(s.load(id).unwrap(), None);
        let leftovers: Vec<_> = fs::read_dir(s.dir()).unwrap().collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        fs::remove_dir_all(s.dir()).unwrap();
    }

    #[test]
    fn a_file_that_is_not_a_position_is_invalid_data_naming_it() {
        let s = store("invalid");
        let id = SessionId::from_u128(1);
        let hex = id.to_hex();
        let secret = "00".repeat(16);
        for bad in [
            String::new(),
            "12\n".into(),
            format!("framepipe-session-position/2 00 3 {secret}\n"),
            format!("framepipe-session-position/2 {hex} 3\n"),
            format!("framepipe-session-position/2 {hex} 3 {}\n", &secret[1..]),
            format!("framepipe-session-position/2 {hex} 3 {}zz\n", &secret[2..]),
        ] {
            fs::write(s.path(id), &bad).unwrap();
            let err = s.load(id).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{bad:?}");
            assert!(err.to_string().contains(".position"), "{err}");
        }
        // A file from before resume secrets says what to do.
        fs::write(
            s.path(id),
            format!("framepipe-session-position/1 {hex} 3\n"),
        )
        .unwrap();
        let err = s.load(id).unwrap_err().to_string();
        assert!(err.contains("delete the file"), "{err}");
        fs::remove_dir_all(s.dir()).unwrap();
    }
}

//! Where a session's position lives across consumer restarts (SPEC §10.3).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use framepipe_codec::session::SessionId;

/// A session's position, kept where it survives the consumer's process: the sequence number of the
/// first frame of the session not yet handled (SPEC §10.3).
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
    /// The position committed for `session`, or `None` if none was.
    fn load(&self, session: SessionId) -> io::Result<Option<u64>>;

    /// Records, durably, that every frame of `session` numbered below `next` was handled. Returns
    /// once it would survive a crash of the process or the machine.
    fn commit(&self, session: SessionId, next: u64) -> io::Result<()>;

    /// Forgets `session` (it ended, or expired).
    fn forget(&self, session: SessionId) -> io::Result<()>;
}

/// A [`SessionStore`] of one small file per session in a directory (SPEC §10.3.2).
///
/// Each commit writes the position to a temporary file, syncs it, renames it over the session's
/// file and syncs the directory: after a crash (even `kill -9` mid-commit, or a power cut) the file
/// holds the previous position or the new one, never a mix. Costs two `fsync`s per commit (about a
/// millisecond on an SSD, more on a disk): commit every N frames, not every frame, when that is
/// too slow. Commits are serialised within one store.
///
/// ```
/// use framepipe_consumer::{FileStore, SessionStore};
/// use framepipe_codec::session::SessionId;
///
/// let dir = std::env::temp_dir().join(format!("framepipe-doc-store-{}", std::process::id()));
/// let store = FileStore::open(&dir)?;
/// let session = SessionId::from_u128(42);
/// assert_eq!(store.load(session)?, None);
/// store.commit(session, 1_000)?;
/// assert_eq!(FileStore::open(&dir)?.load(session)?, Some(1_000)); // as after a restart
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
const FORMAT: &str = "framepipe-session-position/1";

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
        self.dir.join(format!("{session}.position"))
    }
}

impl SessionStore for FileStore {
    /// Reads the session's file; a file that is not a position of this session is `InvalidData`,
    /// naming the file.
    fn load(&self, session: SessionId) -> io::Result<Option<u64>> {
        let path = self.path(session);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        parse(&text, session).map(Some).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is not a framepipe session position (expected \"{FORMAT} {session} <next>\")",
                    path.display()
                ),
            )
        })
    }

    fn commit(&self, session: SessionId, next: u64) -> io::Result<()> {
        let _one_at_a_time = self.commits.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.path(session);
        let tmp = path.with_extension("position.tmp");
        let mut file = File::create(&tmp)?;
        writeln!(file, "{FORMAT} {session} {next}")?;
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

/// The position in `text`, if it is one line `FORMAT session next` for this session.
fn parse(text: &str, session: SessionId) -> Option<u64> {
    let line = text.strip_suffix('\n')?;
    let mut words = line.split(' ');
    let (format, id, next) = (words.next()?, words.next()?, words.next()?);
    if format != FORMAT || id != session.to_string() || words.next().is_some() {
        return None;
    }
    next.parse().ok()
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

    #[test]
    fn commits_replace_the_position_and_forget_removes_it() {
        let s = store("replace");
        let id = SessionId::from_u128(7);
        s.commit(id, 5).unwrap();
        s.commit(id, 9).unwrap();
        assert_eq!(s.load(id).unwrap(), Some(9));
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
        for bad in ["", "12\n", "framepipe-session-position/1 00 3\n"] {
            fs::write(s.path(id), bad).unwrap();
            let err = s.load(id).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            assert!(err.to_string().contains(".position"), "{err}");
        }
        fs::remove_dir_all(s.dir()).unwrap();
    }
}

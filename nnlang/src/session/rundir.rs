//! Directories nnlang writes (a run, a search, an ensemble), owned carefully: a directory is
//! a run only when its manifest (`run.json`) is one nnlang wrote and it verifies; nnlang
//! replaces only the files its manifest lists and never removes anything else; one process
//! at a time holds a directory ([`DirLock`]); a save is all or nothing, even across a kill.

use serde_json::Value;
use std::fs::File;
use std::io::{ErrorKind, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The file that marks a directory as a run directory nnlang wrote, and describes the run.
pub const MANIFEST: &str = "run.json";

/// The manifest's `format` and `version`.
const FORMAT: &str = "nnlang-run";
const VERSION: u64 = 1;

/// The lock file every directory nnlang writes holds while a command writes it.
pub const LOCK: &str = ".nnlang.lock";

fn shown(path: &Path) -> String {
    path.display().to_string()
}

/// An exclusive hold on a directory for one process: a second `train`, `search` or `ensemble`
/// into the same directory stops at once, naming the process that holds it. The hold is an
/// advisory lock on `.nnlang.lock` in the directory (holding the process id), released when
/// dropped or when the process ends, however it ends.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes `dir` (which must exist) for `command` (`train`, `search`, …).
    pub fn take(dir: &Path, command: &str) -> Result<DirLock, String> {
        let path = dir.join(LOCK);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("{}: cannot lock the directory: {e}", shown(dir)))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let by = match pid.trim().parse::<u32>() {
                    Ok(p) => format!("process {p}"),
                    Err(_) => "another process".to_string(),
                };
                return Err(format!(
                    "{}: in use by {by} (another `nnlangc {command}` writing there); wait for it to finish, or choose another directory",
                    shown(dir)
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(format!("{}: cannot lock the directory: {e}", shown(dir)));
            }
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        let _ = file.flush();
        Ok(DirLock { _file: file })
    }
}

/// What a run manifest nnlang wrote says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    /// The run's files (the manifest and the lock aside).
    pub files: Vec<String>,
    /// The epochs completed and saved.
    pub epochs_done: usize,
    /// Whether the run ended normally (rather than after an epoch or an interruption).
    pub complete: bool,
}

/// The manifest `text`, if it is one nnlang wrote; otherwise why not.
pub fn parse_manifest(text: &str) -> Result<Manifest, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
    let Some(o) = v.as_object() else { return Err("not a JSON object".into()) };
    if o.get("format").and_then(Value::as_str) != Some(FORMAT) {
        return Err(format!("its `format` is not \"{FORMAT}\""));
    }
    if o.get("version").and_then(Value::as_u64) != Some(VERSION) {
        return Err(format!("its `version` is not {VERSION}"));
    }
    let Some(files) = o.get("files").and_then(Value::as_array) else { return Err("it lists no `files`".into()) };
    let mut out = Manifest {
        epochs_done: o.get("epochs_done").and_then(Value::as_u64).unwrap_or(0) as usize,
        complete: o.get("complete").and_then(Value::as_bool).unwrap_or(false),
        ..Manifest::default()
    };
    for f in files {
        match f.as_str() {
            Some(name) if plain_name(name) => out.files.push(name.to_string()),
            _ => return Err(format!("its `files` names {f}, not a file of a run")),
        }
    }
    Ok(out)
}

/// A file name nnlang may write in a run directory: no separators, not hidden, not the
/// manifest or the lock.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && name != MANIFEST
        && name.len() <= 255
}

/// The manifest in `dir`, when there is one nnlang wrote; `Ok(None)` without a manifest; an
/// error naming the manifest when it is someone else's.
pub fn read_manifest(dir: &Path) -> Result<Option<Manifest>, String> {
    let path = dir.join(MANIFEST);
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", shown(&path))),
        Ok(m) if !m.is_file() => return Err(format!("{}: not a file", shown(&path))),
        Ok(m) if m.len() > 1 << 20 => return Err(format!("{}: {} bytes, not a run manifest", shown(&path), m.len())),
        Ok(_) => {}
    }
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: cannot read: {e}", shown(&path)))?;
    parse_manifest(&text).map(Some).map_err(|why| format!("{}: not a manifest nnlang wrote: {why}", shown(&path)))
}

/// A run directory, held by this process: its files replaced all at once on each save, the
/// user's files beside them left alone.
///
/// A save writes every file into a sibling directory (`.<name>.nnlang-saving`), marked as
/// being written until everything is synced, then marked committed; it is then exchanged with
/// the run directory in one step (`renameat2(RENAME_EXCHANGE)` on Linux; elsewhere two
/// renames), so a reader sees the whole previous save or the whole new one, never a mix. The
/// directory's lock is hard-linked into the new one first, so it is never absent. Last, every
/// entry of the old directory that its manifest does not list — the user's files and folders
/// — is moved back into the run directory, and the old save is removed. A kill at any moment
/// is finished by the next command that takes the directory ([`RunDir::prepare`]): a save
/// being written is dropped, a committed one is exchanged, the user's entries are moved back.
/// Nothing a manifest never listed is ever removed.
#[derive(Debug)]
pub struct RunDir {
    /// The directory's absolute path.
    dir: PathBuf,
    /// Created by [`RunDir::prepare`]: removed again if nothing is ever saved in it.
    created: bool,
    saved: std::cell::Cell<bool>,
    _lock: DirLock,
}

/// In a stage: written first, removed when every file is synced (a save being written).
const WRITING: &str = ".nnlang-writing";
/// In a stage: written when the save is complete, before the exchange (committed).
const COMMITTED: &str = ".nnlang-committed";

/// A directory this process created and never saved a run in (a first epoch interrupted,
/// data that failed to load) is removed: it leaves nothing behind.
impl Drop for RunDir {
    fn drop(&mut self) {
        if self.created && !self.saved.get() {
            let _ = std::fs::remove_file(self.dir.join(LOCK));
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

impl RunDir {
    /// Takes `dir` for a run, before anything is trained: it is absent (it is created), empty,
    /// or holds a run nnlang wrote (a manifest that verifies). A directory with other files
    /// and no manifest, or with a manifest nnlang did not write, is refused and left as it is.
    pub fn prepare(dir: &Path) -> Result<RunDir, String> {
        let s = shown(dir);
        let abs = if dir.is_absolute() {
            dir.to_path_buf()
        } else {
            std::env::current_dir().map_err(|e| format!("{s}: {e}"))?.join(dir)
        };
        let mut created = false;
        match std::fs::symlink_metadata(&abs) {
            Ok(m) if m.is_dir() => {
                let run = read_manifest(&abs).map_err(|why| format!("refusing to write a run in {s}: {why}"))?;
                if run.is_none() {
                    let mut entries = std::fs::read_dir(&abs).map_err(|e| format!("{s}: cannot read: {e}"))?;
                    let others = entries.any(|e| e.is_ok_and(|e| e.file_name() != LOCK && e.file_name() != COMMITTED));
                    if others {
                        return Err(format!(
                            "{s}: refusing to write a run here: the directory holds files that are not an nnlang run (no {MANIFEST}); choose a new or empty directory"
                        ));
                    }
                }
            }
            Ok(_) => return Err(format!("{s}: refusing to write a run here: it exists and is not a directory")),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                std::fs::create_dir_all(&abs).map_err(|e| format!("{s}: cannot create: {e}"))?;
                created = true;
            }
            Err(e) => return Err(format!("{s}: {e}")),
        }
        let abs = std::fs::canonicalize(&abs).map_err(|e| format!("{s}: {e}"))?;
        if abs.parent().is_none() || abs.file_name().is_none() {
            return Err(format!("{s}: refusing to write a run in a file system's root"));
        }
        let lock = DirLock::take(&abs, "train")?;
        let run = RunDir { dir: abs, created, saved: std::cell::Cell::new(false), _lock: lock };
        run.recover()?;
        Ok(run)
    }

    /// The run directory's path.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn stage(&self) -> PathBuf {
        let name = self.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        self.dir.with_file_name(format!(".{name}.nnlang-saving"))
    }

    /// Finishes what a killed save left: drops a stage being written, exchanges a committed
    /// one, and moves the user's entries back out of an exchanged one.
    fn recover(&self) -> Result<(), String> {
        let _ = std::fs::remove_file(self.dir.join(COMMITTED));
        let stage = self.stage();
        match std::fs::symlink_metadata(&stage) {
            Err(_) => Ok(()),
            Ok(m) if !m.is_dir() => Err(format!("{}: not a directory nnlang staged; remove it", shown(&stage))),
            Ok(_) if stage.join(WRITING).exists() => self.discard(&stage),
            Ok(_) if stage.join(COMMITTED).exists() => self.exchange(&stage),
            Ok(_) => self.restore(&stage),
        }
    }

    /// Removes a stage that was never committed: its plain files, then the directory.
    fn discard(&self, stage: &Path) -> Result<(), String> {
        if let Ok(entries) = std::fs::read_dir(stage) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_file()) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        std::fs::remove_dir(stage).map_err(|e| format!("{}: cannot remove an unfinished save: {e}", shown(stage)))
    }

    /// Replaces the run's files with `files` (name, bytes), all at once, with the manifest
    /// (`run.json`): `about` (what the run says of itself, a JSON object) with the format,
    /// version and list of files added, written last.
    pub fn write<B: AsRef<[u8]>>(
        &self,
        files: &[(String, B)],
        about: serde_json::Map<String, Value>,
    ) -> Result<(), String> {
        let names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
        if let Some(bad) = names.iter().find(|n| !plain_name(n)) {
            return Err(format!("{}: `{bad}` is not a file name a run may hold", shown(&self.dir)));
        }
        let mut manifest = about;
        manifest.insert("format".into(), Value::from(FORMAT));
        manifest.insert("version".into(), Value::from(VERSION));
        manifest.insert("files".into(), Value::from(names.clone()));
        let manifest = format!("{:#}\n", Value::Object(manifest)).into_bytes();
        self.recover()?;
        let stage = self.stage();
        let fail = |e: std::io::Error| format!("{}: cannot write: {e}", shown(&self.dir));
        std::fs::create_dir(&stage).map_err(fail)?;
        let staged = (|| {
            write_synced(&stage.join(WRITING), b"")?;
            for (name, bytes) in files {
                write_synced(&stage.join(name), bytes.as_ref())?;
            }
            write_synced(&stage.join(MANIFEST), &manifest)?;
            write_synced(&stage.join(COMMITTED), b"")?;
            std::fs::remove_file(stage.join(WRITING))?;
            File::open(&stage).and_then(|d| d.sync_all())
        })();
        if let Err(e) = staged {
            let _ = self.discard(&stage);
            return Err(fail(e));
        }
        self.exchange(&stage)?;
        self.saved.set(true);
        Ok(())
    }

    /// Puts a committed stage where the run directory is, all at once (the lock linked in
    /// first), then restores the user's entries from the old one.
    fn exchange(&self, stage: &Path) -> Result<(), String> {
        let fail = |e: std::io::Error| format!("{}: cannot save the run: {e}", shown(&self.dir));
        let lock = stage.join(LOCK);
        if !lock.exists() {
            std::fs::hard_link(self.dir.join(LOCK), &lock).map_err(fail)?;
        }
        swap(stage, &self.dir).map_err(fail)?;
        let _ = std::fs::remove_file(self.dir.join(COMMITTED));
        if let Some(parent) = self.dir.parent() {
            let _ = File::open(parent).and_then(|d| d.sync_all());
        }
        self.restore(stage)
    }

    /// `old` holds a previous save (after the exchange): moves every entry its manifest does
    /// not list back into the run directory, then removes the save.
    fn restore(&self, old: &Path) -> Result<(), String> {
        let listed = read_manifest(old).ok().flatten().unwrap_or_default().files;
        let ours = |n: &str| n == LOCK || n == COMMITTED || n == WRITING || listed.iter().any(|l| l == n);
        let entries = std::fs::read_dir(old).map_err(|e| format!("{}: cannot read: {e}", shown(old)))?;
        // The manifest goes last: until then a kill leaves it saying which files are the run's.
        for e in entries.flatten().filter(|e| e.file_name() != MANIFEST) {
            let name = e.file_name().to_string_lossy().into_owned();
            let from = e.path();
            if ours(&name) && e.file_type().is_ok_and(|t| t.is_file()) {
                let _ = std::fs::remove_file(&from);
                continue;
            }
            // The user's: back beside the run (under another name if the run now has one).
            let mut to = self.dir.join(&name);
            let mut n = 1;
            while std::fs::symlink_metadata(&to).is_ok() {
                to = self.dir.join(format!("{name}.yours-{n}"));
                n += 1;
            }
            std::fs::rename(&from, &to)
                .map_err(|e| format!("{}: cannot move it back into {}: {e}", shown(&from), shown(&self.dir)))?;
        }
        let _ = std::fs::remove_file(old.join(MANIFEST));
        std::fs::remove_dir(old).map_err(|e| format!("{}: cannot remove the previous save: {e}", shown(old)))
    }
}

/// Exchanges two directories' places (atomically where the system can).
fn swap(a: &Path, b: &Path) -> std::io::Result<()> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use nix::fcntl::{renameat2, RenameFlags};
        // Absolute paths: the directory descriptors are not consulted.
        let here = File::open(a.parent().unwrap_or(Path::new("/")))?;
        if renameat2(&here, a, &here, b, RenameFlags::RENAME_EXCHANGE).is_ok() {
            return Ok(());
        }
    }
    // No atomic exchange here: the old run aside, the new one in, the old one to `a`.
    let aside = a.with_extension("aside");
    std::fs::rename(b, &aside)?;
    if let Err(e) = std::fs::rename(a, b) {
        let _ = std::fs::rename(&aside, b);
        return Err(e);
    }
    std::fs::rename(&aside, a)
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nnlang-rundir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn files(list: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        list.iter().map(|(n, b)| (n.to_string(), b.as_bytes().to_vec())).collect()
    }

    #[test]
    fn a_save_replaces_only_the_listed_files_and_keeps_the_users() {
        let d = temp("keep");
        let run = RunDir::prepare(&d).expect("test");
        run.write(&files(&[("a.txt", "1"), ("old.bin", "x")]), Default::default()).expect("test");
        std::fs::write(d.join("NOTES.md"), "mine").expect("test");
        std::fs::create_dir(d.join("sub")).expect("test");
        run.write(&files(&[("a.txt", "2")]), Default::default()).expect("test");
        assert_eq!(std::fs::read_to_string(d.join("a.txt")).expect("test"), "2");
        assert!(!d.join("old.bin").exists(), "a file the new save does not list is removed");
        assert_eq!(std::fs::read_to_string(d.join("NOTES.md")).expect("test"), "mine");
        assert!(d.join("sub").is_dir());
        assert!(!d
            .with_file_name(format!(".{}.nnlang-saving", d.file_name().expect("test").to_string_lossy()))
            .exists());
        let listed = parse_manifest(&std::fs::read_to_string(d.join(MANIFEST)).expect("test")).expect("test");
        assert_eq!(listed.files, ["a.txt"]);
        drop(run);
        // Taken again (a resume): the user's files are still there.
        let again = RunDir::prepare(&d).expect("test");
        drop(again);
        assert!(d.join("NOTES.md").exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_foreign_manifest_or_foreign_files_are_refused_and_untouched() {
        for (manifest, why) in [
            ("{\"experiment\": \"mine\"}", "its `format` is not \"nnlang-run\""),
            ("{}", "its `format` is not \"nnlang-run\""),
            ("not json", "not JSON"),
            ("{\"format\": \"nnlang-run\", \"version\": 1, \"files\": [\"../x\"]}", "not a file of a run"),
        ] {
            let d = temp("foreign");
            std::fs::create_dir_all(d.join("sub")).expect("test");
            std::fs::write(d.join(MANIFEST), manifest).expect("test");
            std::fs::write(d.join("notes.txt"), "mine").expect("test");
            let e = RunDir::prepare(&d).expect_err("refused");
            assert!(e.contains("not a manifest nnlang wrote") && e.contains(why), "{e}");
            assert_eq!(std::fs::read_to_string(d.join(MANIFEST)).expect("test"), manifest);
            assert!(d.join("notes.txt").exists() && d.join("sub").is_dir() && !d.join(LOCK).exists());
            let _ = std::fs::remove_dir_all(&d);
        }
        let d = temp("others");
        std::fs::create_dir_all(&d).expect("test");
        std::fs::write(d.join("notes.txt"), "mine").expect("test");
        assert!(RunDir::prepare(&d).expect_err("refused").contains("not an nnlang run"));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_process() {
        let d = temp("lock");
        std::fs::create_dir_all(&d).expect("test");
        let first = RunDir::prepare(&d).expect("test");
        let e = RunDir::prepare(&d).expect_err("refused");
        assert!(e.contains(&format!("in use by process {}", std::process::id())), "{e}");
        drop(first);
        assert!(RunDir::prepare(&d).is_ok());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_directory_created_and_never_saved_in_is_removed() {
        let d = temp("unused");
        drop(RunDir::prepare(&d).expect("test"));
        assert!(!d.exists());
    }

    #[test]
    fn a_committed_save_is_finished_and_an_uncommitted_one_discarded() {
        let d = temp("recover");
        let stage = d.with_file_name(format!(".{}.nnlang-saving", d.file_name().expect("test").to_string_lossy()));
        let run = RunDir::prepare(&d).expect("test");
        run.write(&files(&[("w", "old")]), Default::default()).expect("test");
        std::fs::write(d.join("mine.txt"), "mine").expect("test");
        drop(run);
        let manifest = "{\"format\": \"nnlang-run\", \"version\": 1, \"files\": [\"w\"]}";
        // Killed after the commit, before the exchange.
        std::fs::create_dir(&stage).expect("test");
        std::fs::write(stage.join("w"), "new").expect("test");
        std::fs::write(stage.join(MANIFEST), manifest).expect("test");
        std::fs::write(stage.join(COMMITTED), "").expect("test");
        drop(RunDir::prepare(&d).expect("test"));
        assert_eq!(std::fs::read_to_string(d.join("w")).expect("test"), "new");
        assert_eq!(std::fs::read_to_string(d.join("mine.txt")).expect("test"), "mine");
        assert!(!stage.exists() && !d.join(COMMITTED).exists());
        // Killed while writing: dropped.
        std::fs::create_dir(&stage).expect("test");
        std::fs::write(stage.join(WRITING), "").expect("test");
        std::fs::write(stage.join("w"), "half").expect("test");
        drop(RunDir::prepare(&d).expect("test"));
        assert_eq!(std::fs::read_to_string(d.join("w")).expect("test"), "new");
        assert!(!stage.exists());
        // Killed after the exchange: the old save holds the user's file, moved back.
        std::fs::create_dir(&stage).expect("test");
        std::fs::write(stage.join("w"), "older").expect("test");
        std::fs::write(stage.join(MANIFEST), manifest).expect("test");
        std::fs::write(stage.join("late.txt"), "mine too").expect("test");
        drop(RunDir::prepare(&d).expect("test"));
        assert_eq!(std::fs::read_to_string(d.join("w")).expect("test"), "new");
        assert_eq!(std::fs::read_to_string(d.join("late.txt")).expect("test"), "mine too");
        assert!(!stage.exists());
        let _ = std::fs::remove_dir_all(&d);
    }
}

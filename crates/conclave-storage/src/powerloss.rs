//! A disk that loses what was never synced: the power-loss tests run the stores on it.
//!
//! Why: `kill -9` leaves the page cache in place, so a crash test on a real file system
//! never finds a missing fsync. [`PowerLossDisk`] keeps two images of everything, what a
//! reader sees and what is durable, and [`PowerLossDisk::power_cut`] returns a new disk that
//! holds only what a real disk could hold after the power went:
//!
//! - a file's content as of its last `sync_data`, plus a random prefix of the writes and
//!   length changes made since, the first one left out possibly torn (a random prefix of its
//!   bytes: a sector boundary is not assumed);
//! - a directory's entries as of its last `sync_dir`, plus a random prefix of the creations,
//!   renames and removals made since (a rename is atomic: it happens whole or not at all).
//!
//! That is what POSIX promises and what ext4 (`data=ordered`) does, minus reordering inside
//! one file's unsynced writes, which the stores never rely on (each file is either synced
//! before anything depends on it, or read back with checksums).
//! Directories are created durably ([`Disk::create_dir_all`]'s contract) and never removed.
//!
//! Everything on the old disk fails after the cut, so nothing written later can be
//! acknowledged. Randomness comes from a seed, so a failing run can be replayed.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::disk::{Disk, DiskFile, OpenMode, parent_dir};

/// A simulated disk rooted at a path that exists from the start (e.g. `/sim`).
#[derive(Clone)]
pub struct PowerLossDisk {
    sim: Arc<Mutex<Sim>>,
}

#[derive(Clone, Debug)]
enum FileOp {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

#[derive(Clone, Default)]
struct SimFile {
    /// What readers see.
    data: Vec<u8>,
    /// What survives a power cut for sure.
    durable: Vec<u8>,
    /// Changes since the last sync, oldest first.
    pending: Vec<FileOp>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    File(u64),
    Dir,
}

#[derive(Clone, Debug)]
enum DirOp {
    Link(String, Entry),
    Unlink(String),
    Rename { from: String, to: String },
}

#[derive(Clone, Default)]
struct SimDir {
    entries: BTreeMap<String, Entry>,
    durable: BTreeMap<String, Entry>,
    pending: Vec<DirOp>,
}

#[derive(Clone)]
struct Sim {
    root: PathBuf,
    files: HashMap<u64, SimFile>,
    dirs: BTreeMap<PathBuf, SimDir>,
    next_inode: u64,
    rng: StdRng,
    /// Mutations (writes, length changes, syncs, namespace changes) made so far.
    mutations: u64,
    /// Cut the power just before this mutation.
    cut_at: Option<u64>,
    /// What survived, once the power is cut.
    survivor: Option<Box<Sim>>,
}

fn powered_off() -> io::Error {
    io::Error::other("the power is off (simulated power cut)")
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} does not exist", path.display()),
    )
}

fn apply_file_op(data: &mut Vec<u8>, op: &FileOp) {
    match op {
        FileOp::Write { offset, bytes } => {
            let start = *offset as usize;
            let end = start + bytes.len();
            if data.len() < end {
                data.resize(end, 0);
            }
            data[start..end].copy_from_slice(bytes);
        }
        FileOp::SetLen(len) => data.resize(*len as usize, 0),
    }
}

fn apply_dir_op(entries: &mut BTreeMap<String, Entry>, op: &DirOp) {
    match op {
        DirOp::Link(name, e) => {
            entries.insert(name.clone(), *e);
        }
        DirOp::Unlink(name) => {
            entries.remove(name);
        }
        DirOp::Rename { from, to } => {
            if let Some(e) = entries.remove(from) {
                entries.insert(to.clone(), e);
            }
        }
    }
}

impl Sim {
    fn split<'p>(&self, path: &'p Path) -> io::Result<(PathBuf, &'p str)> {
        let parent = parent_dir(path)?.to_path_buf();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
        Ok((parent, name))
    }

    fn dir_mut(&mut self, dir: &Path) -> io::Result<&mut SimDir> {
        self.dirs.get_mut(dir).ok_or_else(|| not_found(dir))
    }

    fn lookup(&self, path: &Path) -> io::Result<Option<Entry>> {
        let (parent, name) = self.split(path)?;
        let dir = self.dirs.get(&parent).ok_or_else(|| not_found(&parent))?;
        Ok(dir.entries.get(name).copied())
    }

    /// Count one mutation; cut the power first when this is the chosen one.
    fn mutate(&mut self) -> io::Result<()> {
        if self.survivor.is_some() {
            return Err(powered_off());
        }
        if self.cut_at.is_some_and(|at| self.mutations >= at) {
            self.cut();
            return Err(powered_off());
        }
        self.mutations += 1;
        Ok(())
    }

    fn check_powered(&self) -> io::Result<()> {
        match self.survivor {
            Some(_) => Err(powered_off()),
            None => Ok(()),
        }
    }

    fn cut(&mut self) {
        if self.survivor.is_some() {
            return;
        }
        let seed = self.rng.random::<u64>();
        let mut rng = StdRng::seed_from_u64(self.rng.random::<u64>());
        let mut dirs = BTreeMap::new();
        for (path, dir) in &self.dirs {
            let mut entries = dir.durable.clone();
            let kept = rng.random_range(0..=dir.pending.len());
            for op in &dir.pending[..kept] {
                apply_dir_op(&mut entries, op);
            }
            dirs.insert(
                path.clone(),
                SimDir {
                    durable: entries.clone(),
                    entries,
                    pending: Vec::new(),
                },
            );
        }
        let mut files = HashMap::new();
        for (inode, file) in &self.files {
            let mut data = file.durable.clone();
            let kept = rng.random_range(0..=file.pending.len());
            for op in &file.pending[..kept] {
                apply_file_op(&mut data, op);
            }
            // The first write left out may have reached the platter in part.
            if let Some(FileOp::Write { offset, bytes }) = file.pending.get(kept)
                && rng.random_bool(0.5)
            {
                let torn = rng.random_range(0..=bytes.len());
                apply_file_op(
                    &mut data,
                    &FileOp::Write {
                        offset: *offset,
                        bytes: bytes[..torn].to_vec(),
                    },
                );
            }
            files.insert(
                *inode,
                SimFile {
                    durable: data.clone(),
                    data,
                    pending: Vec::new(),
                },
            );
        }
        self.survivor = Some(Box::new(Sim {
            root: self.root.clone(),
            files,
            dirs,
            next_inode: self.next_inode,
            rng: StdRng::seed_from_u64(seed),
            mutations: 0,
            cut_at: None,
            survivor: None,
        }));
    }

    fn new_inode(&mut self) -> u64 {
        self.next_inode += 1;
        self.next_inode
    }
}

impl PowerLossDisk {
    /// An empty disk whose only directory is `root`; `seed` drives every random choice.
    pub fn new(root: &Path, seed: u64) -> Self {
        let mut dirs = BTreeMap::new();
        dirs.insert(root.to_path_buf(), SimDir::default());
        Self::from_sim(Sim {
            root: root.to_path_buf(),
            files: HashMap::new(),
            dirs,
            next_inode: 0,
            rng: StdRng::seed_from_u64(seed),
            mutations: 0,
            cut_at: None,
            survivor: None,
        })
    }

    fn from_sim(sim: Sim) -> Self {
        Self {
            sim: Arc::new(Mutex::new(sim)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Sim> {
        self.sim.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Mutations made so far (to choose a cut point among them).
    pub fn mutations(&self) -> u64 {
        self.lock().mutations
    }

    /// Cut the power just before the `n`-th mutation from now (0: the next one).
    pub fn cut_after(&self, n: u64) {
        let mut sim = self.lock();
        sim.cut_at = Some(sim.mutations + n);
    }

    /// Whether the power is off (cut now, or by [`PowerLossDisk::cut_after`]).
    pub fn is_cut(&self) -> bool {
        self.lock().survivor.is_some()
    }

    /// Cut the power now (unless it is off already) and return the disk as it comes back:
    /// only what was synced, plus a random part of the rest. From now on every operation
    /// on this disk and on the files it opened fails.
    pub fn power_cut(&self) -> PowerLossDisk {
        let mut sim = self.lock();
        sim.cut();
        match sim.survivor.as_deref() {
            // A survivor is powered, fresh and has no survivor of its own.
            Some(survivor) => Self::from_sim(survivor.clone()),
            // cut() always leaves a survivor.
            None => Self::new(&sim.root, 0),
        }
    }
}

struct SimHandle {
    disk: PowerLossDisk,
    inode: u64,
}

impl SimHandle {
    /// Run `f` on the file under the disk's lock, as one mutation when `mutates`.
    fn with_file<R>(&self, mutates: bool, f: impl FnOnce(&mut SimFile) -> R) -> io::Result<R> {
        let mut sim = self.disk.lock();
        if mutates {
            sim.mutate()?;
        } else {
            sim.check_powered()?;
        }
        let file = sim
            .files
            .get_mut(&self.inode)
            .ok_or_else(|| io::Error::other("the file's inode is gone"))?;
        Ok(f(file))
    }
}

impl DiskFile for SimHandle {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let op = FileOp::Write {
            offset,
            bytes: buf.to_vec(),
        };
        self.with_file(true, |f| {
            apply_file_op(&mut f.data, &op);
            f.pending.push(op);
        })
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.with_file(false, |f| {
            let start = offset as usize;
            match f.data.get(start..start + buf.len()) {
                Some(src) => {
                    buf.copy_from_slice(src);
                    Ok(())
                }
                None => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "read past the end of the file",
                )),
            }
        })?
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let op = FileOp::SetLen(len);
        self.with_file(true, |f| {
            apply_file_op(&mut f.data, &op);
            f.pending.push(op);
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.with_file(true, |f| {
            for op in std::mem::take(&mut f.pending) {
                apply_file_op(&mut f.durable, &op);
            }
        })
    }
}

impl Disk for PowerLossDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut sim = self.lock();
        sim.check_powered()?;
        let root = sim.root.clone();
        let rest = dir.strip_prefix(&root).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is outside the simulated disk", dir.display()),
            )
        })?;
        let mut at = root;
        for part in rest.components() {
            let name = part.as_os_str().to_string_lossy().into_owned();
            let next = at.join(&name);
            if !sim.dirs.contains_key(&next) {
                sim.mutate()?;
                let parent = sim.dir_mut(&at)?;
                // Durable at once: the contract of create_dir_all.
                parent.entries.insert(name.clone(), Entry::Dir);
                parent.durable.insert(name, Entry::Dir);
                sim.dirs.insert(next.clone(), SimDir::default());
            }
            at = next;
        }
        Ok(())
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let sim = self.lock();
        sim.check_powered()?;
        match sim.lookup(path)? {
            Some(Entry::File(inode)) => Ok(sim
                .files
                .get(&inode)
                .map(|f| f.data.clone())
                .unwrap_or_default()),
            Some(Entry::Dir) => Err(io::Error::other(format!(
                "{} is a directory",
                path.display()
            ))),
            None => Err(not_found(path)),
        }
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let sim = self.lock();
        sim.check_powered()?;
        let d = sim.dirs.get(dir).ok_or_else(|| not_found(dir))?;
        Ok(d.entries.keys().cloned().collect())
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn DiskFile>> {
        let mut sim = self.lock();
        sim.check_powered()?;
        let inode = match (sim.lookup(path)?, mode) {
            (Some(Entry::Dir), _) => {
                return Err(io::Error::other(format!(
                    "{} is a directory",
                    path.display()
                )));
            }
            (Some(Entry::File(inode)), OpenMode::CreateEmpty) => {
                sim.mutate()?;
                let file = sim.files.entry(inode).or_default();
                apply_file_op(&mut file.data, &FileOp::SetLen(0));
                file.pending.push(FileOp::SetLen(0));
                inode
            }
            (Some(Entry::File(inode)), _) => inode,
            (None, OpenMode::Existing) => return Err(not_found(path)),
            (None, OpenMode::CreateEmpty | OpenMode::CreateOrKeep) => {
                sim.mutate()?;
                let (parent, name) = sim.split(path)?;
                let inode = sim.new_inode();
                sim.files.insert(inode, SimFile::default());
                let dir = sim.dir_mut(&parent)?;
                let op = DirOp::Link(name.to_owned(), Entry::File(inode));
                apply_dir_op(&mut dir.entries, &op);
                dir.pending.push(op);
                inode
            }
        };
        Ok(Arc::new(SimHandle {
            disk: self.clone(),
            inode,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut sim = self.lock();
        sim.mutate()?;
        let (from_dir, from_name) = sim.split(from)?;
        let (to_dir, to_name) = sim.split(to)?;
        if from_dir != to_dir {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the simulated disk renames within one directory only",
            ));
        }
        let dir = sim.dir_mut(&from_dir)?;
        if !dir.entries.contains_key(from_name) {
            return Err(not_found(from));
        }
        let op = DirOp::Rename {
            from: from_name.to_owned(),
            to: to_name.to_owned(),
        };
        apply_dir_op(&mut dir.entries, &op);
        dir.pending.push(op);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut sim = self.lock();
        sim.mutate()?;
        let (parent, name) = sim.split(path)?;
        let dir = sim.dir_mut(&parent)?;
        match dir.entries.get(name) {
            Some(Entry::File(_)) => {}
            Some(Entry::Dir) => {
                return Err(io::Error::other(format!(
                    "{} is a directory",
                    path.display()
                )));
            }
            None => return Err(not_found(path)),
        }
        let op = DirOp::Unlink(name.to_owned());
        apply_dir_op(&mut dir.entries, &op);
        dir.pending.push(op);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut sim = self.lock();
        sim.mutate()?;
        let d = sim.dir_mut(dir)?;
        for op in std::mem::take(&mut d.pending) {
            apply_dir_op(&mut d.durable, &op);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

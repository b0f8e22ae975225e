//! The folders the playbook granted to this step (the `fs` capability).
//!
//! Files are plain `std::fs`; this module only says which folders exist in the
//! sandbox and whether each is writable, which a plugin needs before it hands a
//! path to a granted program (a path outside every granted folder would be
//! resolved inside the step's working directory by the WASI layer, silently).

/// A folder the runner opened for this step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    /// Its name in the sandbox: `.` (the step's working directory) or the path
    /// the playbook granted.
    pub name: String,
    /// Granted `rw` (the working directory always is).
    pub writable: bool,
}

/// The folders this step may open, from `wasi:filesystem/preopens`.
pub fn granted() -> Vec<Folder> {
    #[cfg(target_arch = "wasm32")]
    {
        use wasip2::filesystem::{preopens, types};
        preopens::get_directories()
            .into_iter()
            .map(|(dir, name)| Folder {
                writable: dir
                    .get_flags()
                    .is_ok_and(|f| f.contains(types::DescriptorFlags::MUTATE_DIRECTORY)),
                name,
            })
            .collect()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        Vec::new()
    }
}

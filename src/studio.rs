//! The studio folder: config, characters, sessions and models of one user.
//!
//! The repository itself is a studio folder. Elsewhere `her` uses the folder
//! named by `--studio` or `HER_STUDIO`, then the current directory if it looks
//! like a studio, then the user's data directory.

use std::path::{Path, PathBuf};

use directories::ProjectDirs;

/// File name of the studio's own config.
pub const CONFIG_FILE: &str = "config.toml";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Studio {
    pub root: PathBuf,
}

/// Where a studio folder was found, for `her doctor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StudioOrigin {
    Flag,
    Environment,
    CurrentDirectory,
    UserDataDirectory,
}

impl Studio {
    /// Finds the studio folder (see the module docs for the order).
    pub fn locate(explicit: Option<&Path>) -> (Self, StudioOrigin) {
        if let Some(dir) = explicit {
            return (Self::at(dir), StudioOrigin::Flag);
        }
        if let Some(dir) = std::env::var_os("HER_STUDIO").filter(|v| !v.is_empty()) {
            return (Self::at(Path::new(&dir)), StudioOrigin::Environment);
        }
        if let Ok(cwd) = std::env::current_dir()
            && Self::looks_like_studio(&cwd)
        {
            return (Self::at(&cwd), StudioOrigin::CurrentDirectory);
        }
        let data = ProjectDirs::from("", "", "her-studio")
            .map(|d| d.data_dir().to_path_buf())
            .unwrap_or_else(|| PathBuf::from("."));
        (Self::at(&data), StudioOrigin::UserDataDirectory)
    }

    pub fn at(dir: &Path) -> Self {
        Self {
            root: std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()),
        }
    }

    fn looks_like_studio(dir: &Path) -> bool {
        dir.join(CONFIG_FILE).is_file() && dir.join("characters").is_dir()
    }

    pub fn config_file(&self) -> PathBuf {
        self.root.join(CONFIG_FILE)
    }
}

//! A private temporary clone of the in-cluster repository (removed on drop): reading and
//! writing the environments file and the Flux overlays, staged for one commit.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::platform::runner::Runner;
use crate::platform::up::{path, random_hex};
use crate::platform::{Error, Result, environments, flux};

/// A private temporary clone of the in-cluster repository, removed on drop.
pub struct RepoClone {
    dir: PathBuf,
}

impl RepoClone {
    /// A new private (0700) temporary directory; the clone goes into its `repo`.
    pub(super) fn new_dir() -> Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = std::env::temp_dir().join(format!("appctl-clone-{}", random_hex(8)?));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(Error::io(format!("creating {}", dir.display())))?;
        Ok(Self { dir })
    }

    /// The clone's path.
    pub(super) fn repo(&self) -> String {
        path(&self.dir.join("repo"))
    }

    /// The environments file of the clone.
    pub fn read_environments(&self) -> Result<String> {
        let file = self.dir.join("repo").join(environments::ENVIRONMENTS_FILE);
        std::fs::read_to_string(&file).map_err(Error::io(format!(
            "reading {} of the in-cluster repository",
            environments::ENVIRONMENTS_FILE
        )))
    }

    /// The Flux overlay of each environment of `envs` that has one in the clone.
    fn read_overlays(
        &self,
        envs: &[environments::Environment],
    ) -> Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for e in envs {
            let file = self.dir.join("repo").join(flux::overlay_file(&e.name));
            match std::fs::read_to_string(&file) {
                Ok(text) => {
                    out.insert(e.name.clone(), text);
                }
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    return Err(Error::Io {
                        what: format!("reading {} of the in-cluster repository", file.display()),
                        source: err,
                    });
                }
            }
        }
        Ok(out)
    }

    /// Writes the environments file (`before` → `content`) and, for each environment whose
    /// image changes, its Flux overlay ([`environments::overlay_changes`]), and stages them:
    /// one commit for both engines.
    pub fn write_environments(&self, r: &dyn Runner, before: &str, content: &str) -> Result<()> {
        let overlays = self.read_overlays(&environments::parse(content)?)?;
        let mut files = environments::overlay_changes(before, content, &overlays)?;
        files.push((
            environments::ENVIRONMENTS_FILE.to_string(),
            content.to_string(),
        ));
        for (name, text) in &files {
            let file = self.dir.join("repo").join(name);
            std::fs::write(&file, text)
                .map_err(Error::io(format!("writing {}", file.display())))?;
        }
        let repo = self.repo();
        let mut add = vec!["-C", &repo, "add", "--"];
        add.extend(files.iter().map(|(f, _)| f.as_str()));
        r.run("git", &add)?;
        Ok(())
    }
}

impl Drop for RepoClone {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

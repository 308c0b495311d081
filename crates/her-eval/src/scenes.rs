//! The scenes an evaluation plays: shipped scene files (by stem or path) and
//! CoSER scene JSON (one scene or an array of them).

use std::path::{Path, PathBuf};

use super::EvalError;
use her_core::character::coser::import_coser;
use her_core::character::{Character, Scene, load_scene};

/// One scene ready to play.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalScene {
    /// Unique in the evaluation: the file stem, `stem#N` for the N-th scene
    /// of a CoSER array.
    pub id: String,
    pub source: PathBuf,
    pub scene: Scene,
    /// The AI characters (without the narrator).
    pub cast: Vec<Character>,
    /// Whether it came from CoSER JSON (and has no scene file yet).
    pub from_coser: bool,
}

/// Resolves `specs` (scene stems in `scenes_dir`, scene `.toml` paths or
/// CoSER `.json` paths); no specs means every scene in `scenes_dir`.
pub fn load_scenes(
    specs: &[String],
    scenes_dir: &Path,
    characters_dir: &Path,
) -> Result<Vec<EvalScene>, EvalError> {
    let mut out: Vec<EvalScene> = Vec::new();
    let paths: Vec<PathBuf> = if specs.is_empty() {
        let paths = her_core::fsutil::toml_files(scenes_dir).unwrap_or_default();
        if paths.is_empty() {
            return Err(EvalError::NoScenes {
                dir: scenes_dir.to_path_buf(),
            });
        }
        paths
    } else {
        specs
            .iter()
            .map(|spec| resolve(spec, scenes_dir))
            .collect::<Result<_, _>>()?
    };
    for path in paths {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if path
            .extension()
            .is_some_and(|x| x.eq_ignore_ascii_case("json"))
        {
            let imported = import_coser(&path)?;
            let many = imported.len() > 1;
            for (i, coser) in imported.into_iter().enumerate() {
                let id = if many {
                    format!("{stem}#{i}")
                } else {
                    stem.clone()
                };
                let cast = coser.scene.cast(characters_dir)?;
                push_unique(
                    &mut out,
                    EvalScene {
                        id,
                        source: path.clone(),
                        scene: coser.scene,
                        cast,
                        from_coser: true,
                    },
                )?;
            }
        } else {
            let scene = load_scene(&path)?;
            let cast = scene.cast(characters_dir)?;
            push_unique(
                &mut out,
                EvalScene {
                    id: stem,
                    source: path.clone(),
                    scene,
                    cast,
                    from_coser: false,
                },
            )?;
        }
    }
    Ok(out)
}

fn resolve(spec: &str, scenes_dir: &Path) -> Result<PathBuf, EvalError> {
    // Whatever is there is used: reading it says what is wrong (a FIFO, a folder…).
    let as_path = Path::new(spec);
    if as_path.exists() {
        return Ok(as_path.to_path_buf());
    }
    let stem = scenes_dir.join(format!("{spec}.toml"));
    if stem.exists() {
        return Ok(stem);
    }
    Err(EvalError::SceneNotFound {
        spec: spec.to_string(),
        dir: scenes_dir.to_path_buf(),
    })
}

fn push_unique(out: &mut Vec<EvalScene>, scene: EvalScene) -> Result<(), EvalError> {
    if out.iter().any(|s| s.id == scene.id) {
        return Err(EvalError::DuplicateScene {
            id: scene.id,
            path: scene.source,
        });
    }
    out.push(scene);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SCENE: &str = "title = \"Tea\"\nbook = \"B\"\nscenario = \"Tea time.\"\n\
                         environment = true\n[[member]]\nname = \"Ann\"\nprofile = \"Kind.\"\n\
                         [[member]]\nname = \"Bob\"\nprofile = \"Gruff.\"\n";

    #[test]
    fn stems_paths_and_coser() {
        let dir = tempfile::tempdir().unwrap();
        let scenes = dir.path().join("scenes");
        std::fs::create_dir_all(&scenes).unwrap();
        std::fs::write(scenes.join("tea.toml"), SCENE).unwrap();
        let coser = dir.path().join("set.json");
        std::fs::write(
            &coser,
            r#"[{"book": "B", "scenario": "S1", "speaking_characters_w_env": ["Cy", "Environment"]},
                {"book": "B", "scenario": "S2", "key_characters": [{"name": "Di"}]}]"#,
        )
        .unwrap();
        let all = load_scenes(&[], &scenes, dir.path()).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].id.as_str(), all[0].cast.len()), ("tea", 2));
        let specs = ["tea".to_string(), coser.display().to_string()];
        let got = load_scenes(&specs, &scenes, dir.path()).unwrap();
        let ids: Vec<&str> = got.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["tea", "set#0", "set#1"]);
        assert!(got[1].scene.environment && got[1].from_coser);
    }

    #[test]
    fn bad_input_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_scenes(&["nope".into()], dir.path(), dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'nope'") && err.contains("her characters"),
            "{err}"
        );
        let err = load_scenes(&[], &dir.path().join("none"), dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("none"), "{err}");
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{\"book\": 1}").unwrap();
        let err = load_scenes(&[bad.display().to_string()], dir.path(), dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.json"), "{err}");
        let twice = ["x".to_string(), "x".to_string()];
        std::fs::write(dir.path().join("x.toml"), SCENE).unwrap();
        let err = load_scenes(&twice, dir.path(), dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("twice"), "{err}");
    }
}

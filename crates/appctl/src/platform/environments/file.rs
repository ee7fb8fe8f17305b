//! The environments file ([`ENVIRONMENTS_FILE`]): read into [`Environment`]s, and one
//! environment's image changed as text, so the file's comments and layout survive.

use serde_yaml_ng::Value;

use crate::platform::{Error, Result};

/// The file holding the environments, relative to the repository root.
pub const ENVIRONMENTS_FILE: &str = "deploy/argocd/values.yaml";

/// One environment as the file declares it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Environment {
    /// Its name (`dev`): the Application is `metrics-app-<name>`.
    pub name: String,
    /// Whether the file enables it (appctl up overrides this with `--env`).
    pub enabled: bool,
    /// Its namespace.
    pub namespace: String,
    /// Its public hostname.
    pub host: String,
    /// Its image.
    pub image: Image,
    /// Where its password is in OpenBao (KV v2 under `secret/`).
    pub secret_path: String,
}

/// An image reference `repository:tag`; an empty tag means "no image yet".
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Image {
    /// e.g. `metrics-app`.
    pub repository: String,
    /// e.g. `3f2a1c04b5d6`; empty: nothing deployed or promoted yet.
    pub tag: String,
}

impl std::fmt::Display for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.repository, self.tag)
    }
}

fn bad_file(what: impl std::fmt::Display) -> Error {
    Error::Usage(format!("{ENVIRONMENTS_FILE}: {what}"))
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The environments of the file, in the file's order.
pub fn parse(text: &str) -> Result<Vec<Environment>> {
    let doc: Value = serde_yaml_ng::from_str(text).map_err(bad_file)?;
    let Some(map) = doc.get("environments").and_then(Value::as_mapping) else {
        return Err(bad_file("no `environments:` map"));
    };
    let mut out = Vec::new();
    for (k, v) in map {
        let name = scalar(k).ok_or_else(|| bad_file("an environment name is not a string"))?;
        let field = |path: &[&str]| -> Result<String> {
            let mut cur = v;
            for p in path {
                cur = cur.get(*p).ok_or_else(|| {
                    bad_file(format!("environments.{name}.{} is missing", path.join(".")))
                })?;
            }
            if cur.is_null() {
                return Ok(String::new());
            }
            scalar(cur).ok_or_else(|| {
                bad_file(format!(
                    "environments.{name}.{} is not a string",
                    path.join(".")
                ))
            })
        };
        out.push(Environment {
            enabled: v.get("enabled").and_then(Value::as_bool).unwrap_or(false),
            namespace: field(&["namespace"])?,
            host: field(&["host"])?,
            image: Image {
                repository: field(&["image", "repository"])?,
                tag: field(&["image", "tag"])?,
            },
            secret_path: field(&["secretPath"])?,
            name,
        });
    }
    if out.is_empty() {
        return Err(bad_file("`environments:` is empty"));
    }
    Ok(out)
}

/// The environment called `name`, or a usage error listing the known ones.
pub fn find<'a>(envs: &'a [Environment], name: &str) -> Result<&'a Environment> {
    envs.iter().find(|e| e.name == name).ok_or_else(|| {
        Error::Usage(format!(
            "unknown environment {name:?}: {ENVIRONMENTS_FILE} declares {}",
            names(envs)
        ))
    })
}

fn names(envs: &[Environment]) -> String {
    envs.iter()
        .map(|e| e.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `--env dev,staging` checked against the file: the names in the file's order, each once.
pub fn select(envs: &[Environment], arg: &str) -> Result<Vec<String>> {
    let mut wanted = Vec::new();
    for name in arg.split(',').map(str::trim) {
        if name.is_empty() {
            return Err(Error::Usage(format!(
                "--env {arg:?}: an empty name; pass names separated by commas, e.g. --env dev,staging"
            )));
        }
        find(envs, name)?;
        wanted.push(name);
    }
    Ok(envs
        .iter()
        .filter(|e| wanted.contains(&e.name.as_str()))
        .map(|e| e.name.clone())
        .collect())
}

/// A tag Docker accepts (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`): also what keeps the YAML line
/// written below a plain string.
pub(super) fn check_tag(tag: &str) -> Result<()> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "{tag:?} is not an image tag (letters, digits, `_`, `.`, `-`, at most 128)"
        )))
    }
}

fn check_repository(repo: &str) -> Result<()> {
    let ok = !repo.is_empty()
        && repo
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/:".contains(c));
    if ok {
        Ok(())
    } else {
        Err(bad_file(format!("{repo:?} is not an image repository")))
    }
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

/// The trailing ` # comment` of a line, if any (outside quotes is good enough here: the
/// lines edited hold a flow map of plain scalars).
fn trailing_comment(line: &str) -> &str {
    match line.find(" #") {
        // With the spaces before it, so the comment stays where it was.
        Some(i) => &line[line[..i].trim_end_matches(' ').len()..],
        None => "",
    }
}

/// `text` with environment `env`'s image set to `image`: its `image:` line rewritten as a flow
/// map (`image: {repository: R, tag: "T"}`), keeping indentation and a trailing comment;
/// then checked by parsing both: only that image changed.
pub fn set_image(text: &str, env: &str, image: &Image) -> Result<String> {
    check_repository(&image.repository)?;
    check_tag(&image.tag)?;
    let before = parse(text)?;
    find(&before, env)?;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let start = lines
        .iter()
        .position(|l| l.trim_end() == "environments:")
        .ok_or_else(|| bad_file("no `environments:` line at the start of a line"))?;
    // The environment's block: its key line one level in, up to the next key at that level.
    let mut env_line = None;
    let mut level = None;
    for (i, l) in lines.iter().enumerate().skip(start + 1) {
        if !is_content(l) {
            continue;
        }
        let ind = indent_of(l);
        if ind == 0 {
            break;
        }
        let lvl = *level.get_or_insert(ind);
        if ind == lvl && l.trim_start().trim_end() == format!("{env}:") {
            env_line = Some((i, lvl));
            break;
        }
    }
    let (env_i, lvl) = env_line.ok_or_else(|| {
        bad_file(format!(
            "environment {env} is not written as a `{env}:` block under `environments:`"
        ))
    })?;
    let mut image_i = None;
    for (i, l) in lines.iter().enumerate().skip(env_i + 1) {
        if !is_content(l) {
            continue;
        }
        if indent_of(l) <= lvl {
            break;
        }
        if l.trim_start().starts_with("image:") {
            image_i = Some(i);
            break;
        }
    }
    let image_i =
        image_i.ok_or_else(|| bad_file(format!("environments.{env} has no `image:` line")))?;
    let old = lines[image_i];
    let ind = indent_of(old);
    let rest = old.trim_start()["image:".len()..].trim();
    if !rest.starts_with('{') {
        return Err(bad_file(format!(
            "environments.{env}.image must be one line, `image: {{repository: R, tag: T}}`"
        )));
    }
    let newline = if old.ends_with('\n') { "\n" } else { "" };
    let new_line = format!(
        "{}image: {{repository: {}, tag: \"{}\"}}{}{newline}",
        " ".repeat(ind),
        image.repository,
        image.tag,
        trailing_comment(old.trim_end_matches('\n')),
    );
    let mut out = String::with_capacity(text.len() + 16);
    for (i, l) in lines.iter().enumerate() {
        out.push_str(if i == image_i { &new_line } else { l });
    }
    let after = parse(&out)?;
    let expected: Vec<Environment> = before
        .iter()
        .map(|e| {
            let mut e = e.clone();
            if e.name == env {
                e.image = image.clone();
            }
            e
        })
        .collect();
    if after != expected {
        return Err(bad_file(format!(
            "rewriting environments.{env}.image would change more than that image; edit it by hand"
        )));
    }
    // Everything outside `environments` too.
    let strip = |t: &str| -> Result<Value> {
        let mut v: Value = serde_yaml_ng::from_str(t).map_err(bad_file)?;
        if let Some(m) = v.as_mapping_mut() {
            m.remove("environments");
        }
        Ok(v)
    };
    if strip(text)? != strip(&out)? {
        return Err(bad_file(format!(
            "rewriting environments.{env}.image would change other values; edit it by hand"
        )));
    }
    Ok(out)
}

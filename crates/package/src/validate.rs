//! Package-level validation: the strict checks of `dify plugin package` (manifest rules plus
//! icon assets) and the lenient checks the daemon applies to uploads. Both return every problem.

use dify_protocol::manifest::Problem;

use crate::package::Package;

/// `dify plugin package`: manifest struct rules and `CheckAssetsValid` (every referenced icon
/// exists under `_assets/`).
pub fn strict(package: &Package) -> Result<(), Vec<Problem>> {
    let mut problems = package.declaration().validate_strict().err().unwrap_or_default();
    problems.extend(missing_assets(package));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Daemon upload/install: `ManifestValidate`, no UUID author, and a valid unique identifier.
pub fn for_upload(package: &Package) -> Result<(), Vec<Problem>> {
    let declaration = package.declaration();
    let mut problems = declaration.validate_for_daemon().err().unwrap_or_default();
    if uuid_like(&declaration.author) {
        problems.push(Problem::new("author", "cannot set author to an UUID"));
    }
    if let Err(error) = package.unique_identifier() {
        problems.push(Problem::new("plugin_unique_identifier", error.to_string()));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn uuid_like(author: &str) -> bool {
    // Same shape check as the identifier's remote detection: 8-4-4-4-12 hex or 32 hex digits.
    let hex = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_hexdigit());
    let parts: Vec<&str> = author.split('-').collect();
    match parts.as_slice() {
        [a, b, c, d, e] => a.len() == 8 && b.len() == 4 && c.len() == 4 && d.len() == 4 && e.len() == 12 && parts.iter().all(|p| hex(p)),
        [single] => single.len() == 32 && hex(single),
        _ => false,
    }
}

/// Icons referenced by the declaration that are not under `_assets/`.
fn missing_assets(package: &Package) -> Vec<Problem> {
    let d = package.declaration();
    let mut wanted: Vec<(String, &str)> = Vec::new();
    if let Some(model) = &d.model {
        for (field, icon) in [("model.icon_small", &model.icon_small), ("model.icon_large", &model.icon_large)] {
            if let Some(icon) = icon {
                for (language, name) in icon.values() {
                    wanted.push((format!("{field}.{language}"), name));
                }
            }
        }
    }
    if let Some(tool) = &d.tool {
        wanted.push(("tool.identity.icon".into(), &tool.identity.icon));
    }
    if let Some(trigger) = &d.trigger {
        wanted.push(("trigger.identity.icon".into(), &trigger.identity.icon));
    }
    if let Some(datasource) = &d.datasource {
        wanted.push(("datasource.identity.icon".into(), &datasource.identity.icon));
    }
    wanted.push(("icon".into(), &d.icon));
    wanted.push(("icon_dark".into(), &d.icon_dark));
    wanted
        .into_iter()
        .filter(|(_, name)| !name.is_empty() && package.asset(name).is_none())
        .map(|(field, name)| Problem::new(field, format!("icon {name:?} not found in _assets/")))
        .collect()
}

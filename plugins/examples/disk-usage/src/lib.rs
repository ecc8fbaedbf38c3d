//! Example custom action: how much disk a folder of the project uses, and its
//! largest entries. It shows the three things most plugins need: declared
//! params with defaults, the project dir as the filesystem (`.` is the
//! project root), and `println!` as the job log.

use std::fs;
use std::path::Path;

use bosun_plugin_sdk::{Action, Error, Param, Params, export_action, failed, invalid};
use serde_json::json;

struct DiskUsage;

impl Action for DiskUsage {
    const NAME: &'static str = "disk-usage";
    const SUMMARY: &'static str = "Bytes used by a folder of the project, with its largest entries";
    const PARAMS: &'static [Param] = &[
        Param::optional("path", "Folder inside the project", "."),
        Param::optional("top", "How many of the largest entries to list", "5"),
    ];

    fn run(params: Params) -> Result<String, Error> {
        let path = params.str("path")?;
        let top: usize = params.parse("top")?.unwrap_or(5);
        if top == 0 {
            return Err(invalid("param `top` must be at least 1"));
        }
        let entries = fs::read_dir(path).map_err(|e| failed(format_args!("{path}: {e}")))?;
        let mut sizes = Vec::new();
        for entry in entries {
            let entry = entry.map_err(failed)?;
            let bytes = size_of(&entry.path());
            sizes.push((entry.file_name().to_string_lossy().into_owned(), bytes));
        }
        sizes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let total: u64 = sizes.iter().map(|(_, b)| b).sum();
        for (name, bytes) in sizes.iter().take(top) {
            println!("{bytes:>12}  {name}");
        }
        println!("{total:>12}  total ({} entries)", sizes.len());
        let largest: Vec<_> = sizes
            .iter()
            .take(top)
            .map(|(n, b)| json!({ "name": n, "bytes": b }))
            .collect();
        Ok(json!({ "path": path, "total_bytes": total, "largest": largest }).to_string())
    }
}

/// Bytes under `path`, not following symlinks (a link counts as itself).
fn size_of(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path)
        .map(|rd| rd.filter_map(Result::ok).map(|e| size_of(&e.path())).sum())
        .unwrap_or(0)
}

export_action!(DiskUsage);

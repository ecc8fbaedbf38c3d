//! The environment of a confined program: nothing of bosun's own.
//!
//! A program starts from an empty environment with `PATH`, `HOME` (the
//! project dir), `USER`/`LOGNAME`, `LANG` and `TMPDIR`; then the project's
//! `.env`; then the operator's `env` from the config. A plugin's variables
//! for `commands` come last and are checked first: the ones that make a
//! loader or an interpreter run code of the caller's choosing
//! (`LD_PRELOAD`, `PYTHONPATH`, `BASH_ENV`, `NODE_OPTIONS`, `GIT_CONFIG_*`,
//! …) are refused by name. Confinement already holds whatever such code
//! does; the refusal makes the attempt an error instead of a surprise.

/// `PATH` for every confined program, unless the operator's `env` sets one.
pub(crate) const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// `LANG` for every confined program.
pub(crate) const LANG: &str = "C.UTF-8";

/// Prefixes (compared case-insensitively) of variables a plugin may not set.
const DENIED_PREFIXES: &[&str] = &[
    "LD_",
    "DYLD_",
    "GIT_",
    "BASH_FUNC_",
    "NPM_CONFIG_",
    "PYTHON",
    "PERL",
    "RUBY",
    "NODE_",
    "JAVA_",
    "_JAVA_",
    "JDK_",
    "MALLOC_",
    "GLIBC_",
    "BOSUN_",
    "GCONV",
    "SSH_",
    "DOTNET_",
    "CORECLR_",
    "LUA_",
    "PHP",
    "GEM_",
    "BUNDLE_",
    "CARGO_",
    "RUSTC",
    "RUSTFLAGS",
];

/// Whole names a plugin may not set.
const DENIED: &[&str] = &[
    "BASH_ENV",
    "ENV",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "PROMPT_COMMAND",
    "IFS",
    "CDPATH",
    "LOCPATH",
    "NLSPATH",
    "HOSTALIASES",
    "RES_OPTIONS",
    "LOCALDOMAIN",
    "TZDIR",
    "PATH",
    "HOME",
    "TMPDIR",
    "USER",
    "LOGNAME",
    "SHELL",
    "CLASSPATH",
    "PAGER",
    "EDITOR",
    "VISUAL",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "XDG_CACHE_HOME",
];

/// Harmless variables that a denied prefix would otherwise catch.
const ALLOWED: &[&str] = &[
    "PYTHONUNBUFFERED",
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONIOENCODING",
    "NODE_ENV",
];

/// The first of a plugin's `vars` it may not set, with the reason.
pub(crate) fn refused(vars: &[(String, String)]) -> Option<String> {
    vars.iter().map(|(k, _)| k).find_map(|name| {
        let upper = name.to_ascii_uppercase();
        if ALLOWED.contains(&upper.as_str()) {
            return None;
        }
        let bad_name = name.is_empty() || name.contains('=') || name.contains('\0');
        let denied = DENIED.contains(&upper.as_str())
            || DENIED_PREFIXES.iter().any(|p| upper.starts_with(p));
        (bad_name || denied).then(|| {
            format!(
                "environment variable `{name}` is not allowed from a plugin: it can make a \
                 program load or run code of the caller's choosing, or change where it looks for it"
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::refused;

    fn one(name: &str) -> Vec<(String, String)> {
        vec![(name.to_string(), "x".to_string())]
    }

    #[test]
    fn loader_and_interpreter_variables_are_refused() {
        for name in [
            "LD_PRELOAD",
            "ld_library_path",
            "PYTHONPATH",
            "BASH_ENV",
            "NODE_OPTIONS",
            "GIT_CONFIG_COUNT",
            "npm_config_script_shell",
            "PATH",
            "BASH_FUNC_ls%%",
        ] {
            assert!(refused(&one(name)).is_some(), "{name} should be refused");
        }
        for name in ["NODE_ENV", "PYTHONUNBUFFERED", "FROM_PLUGIN", "RAILS_ENV"] {
            assert_eq!(refused(&one(name)), None, "{name} should be allowed");
        }
    }
}

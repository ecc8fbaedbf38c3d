//! The one check of the params a caller gives an action against what its
//! `describe()` declares. The API (a JSON body) and `bosun exec`
//! (`key=value` arguments) both use it, so a plugin that was not built with
//! the SDK still only ever receives params it declared.
//!
//! The rules are the SDK's (`bosun_plugin::Params::check`): no name the
//! action does not declare, none given twice, every required one present.
//! Defaults are not filled in here: a param the caller did not give is not
//! sent, and the plugin (the SDK does it) takes its declared default, so
//! the default lives in one place, the plugin's declaration.
//!
//! One rule for flags: given empty is on, everywhere. The SDK's
//! `Params::flag` takes `true`, `1`, `yes`, `on` or empty (`force=`) for on
//! and `false`, `0`, `no`, `off` for off; the API's query flags take the
//! `1`, `true`, `0`, `false` and empty of their documented schema (`?follow`
//! is on).

use super::bindings::ActionMeta;

/// A value as the caller gave it: text, or something that cannot be a
/// param (a JSON array or object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Given {
    /// A string, or a number or boolean written as text.
    Text(String),
    /// A value that is not a string, number or boolean.
    Unusable,
}

/// What is wrong with the params: every problem, in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("action `{action}`: {}", problems.join("; "))]
pub struct ParamsError {
    /// The action.
    pub action: String,
    /// Each problem, unknown names first, then the declared params in order.
    pub problems: Vec<String>,
}

/// Check `given` (in the caller's order) against `meta`. Returns the params
/// in the declared order, or every problem at once.
///
/// ```
/// use bosun::plugins::bindings::{ActionMeta, ParamSpec};
/// use bosun::plugins::{Given, check_params};
///
/// let meta = ActionMeta {
///     name: "migrate".into(),
///     summary: "Run the migrations".into(),
///     params: vec![ParamSpec {
///         name: "target".into(),
///         summary: "The migration to reach".into(),
///         required: true,
///         default: None,
///     }],
/// };
/// let given = vec![("target".to_string(), Given::Text("0042".into()))];
/// let checked = check_params("migrate", &meta, given).unwrap();
/// assert_eq!(checked, [("target".to_string(), "0042".to_string())]);
///
/// let e = check_params("migrate", &meta, Vec::new()).unwrap_err();
/// assert_eq!(e.to_string(), "action `migrate`: missing required param `target`");
/// ```
pub fn check_params(
    action: &str,
    meta: &ActionMeta,
    given: Vec<(String, Given)>,
) -> Result<Vec<(String, String)>, ParamsError> {
    let mut problems = Vec::new();
    let declared: Vec<&str> = meta.params.iter().map(|p| p.name.as_str()).collect();
    for (i, (name, _)) in given.iter().enumerate() {
        if !declared.contains(&name.as_str()) {
            let accepted = if declared.is_empty() {
                "it takes none".to_string()
            } else {
                format!("it takes {}", declared.join(", "))
            };
            problems.push(format!("unknown param `{name}` ({accepted})"));
        } else if given[..i].iter().any(|(n, _)| n == name) {
            problems.push(format!("param `{name}` is given more than once"));
        }
    }
    let mut params = Vec::new();
    for spec in &meta.params {
        match given.iter().find(|(n, _)| *n == spec.name).map(|(_, v)| v) {
            None if spec.required => {
                problems.push(format!("missing required param `{}`", spec.name));
            }
            None => {}
            Some(Given::Text(value)) => params.push((spec.name.clone(), value.clone())),
            Some(Given::Unusable) => problems.push(format!(
                "param `{}` must be a string, number or boolean",
                spec.name
            )),
        }
    }
    if problems.is_empty() {
        Ok(params)
    } else {
        Err(ParamsError {
            action: action.to_string(),
            problems,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::bindings::ParamSpec;

    fn meta() -> ActionMeta {
        let spec = |name: &str, required: bool, default: Option<&str>| ParamSpec {
            name: name.into(),
            summary: String::new(),
            required,
            default: default.map(Into::into),
        };
        ActionMeta {
            name: "deploy".into(),
            summary: String::new(),
            params: vec![spec("ref", true, None), spec("force", false, Some("false"))],
        }
    }

    fn text(pairs: &[(&str, &str)]) -> Vec<(String, Given)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), Given::Text(v.to_string())))
            .collect()
    }

    #[test]
    fn declared_params_come_back_in_declared_order_without_defaults() {
        let got = check_params("deploy", &meta(), text(&[("force", ""), ("ref", "main")]));
        assert_eq!(
            got,
            Ok(vec![
                ("ref".to_string(), "main".to_string()),
                ("force".to_string(), String::new())
            ])
        );
        let got = check_params("deploy", &meta(), text(&[("ref", "v1")]));
        assert_eq!(got, Ok(vec![("ref".to_string(), "v1".to_string())]));
    }

    #[test]
    fn every_problem_is_named_at_once() {
        let mut given = text(&[("colour", "red"), ("ref", "a"), ("ref", "b")]);
        given.push(("force".into(), Given::Unusable));
        let e = check_params("deploy", &meta(), given).expect_err("refused");
        assert_eq!(
            e.problems,
            [
                "unknown param `colour` (it takes ref, force)",
                "param `ref` is given more than once",
                "param `force` must be a string, number or boolean",
            ]
        );
        let e = check_params("deploy", &meta(), Vec::new()).expect_err("refused");
        assert_eq!(
            e.to_string(),
            "action `deploy`: missing required param `ref`"
        );
    }
}

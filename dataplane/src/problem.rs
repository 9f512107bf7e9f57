//! One thing wrong with a configuration, in one shape wherever it comes
//! from: the policy compiler ([`crate::policy::CompileError`] converts into
//! it), the control plane's store and its guards, the fleet, gatewayd's own
//! file. The API carries it field for field (`gateway.v1.ConfigError`).
//!
//! Every problem is bounded before an operator sees it ([`ConfigProblem::bounded`],
//! [`bounded`]): a value is echoed to [`VALUE_MAX`] bytes (with its length),
//! a message to [`MESSAGE_MAX`], a list cut with "and K more problems".

use std::fmt;

use serde::{Deserialize, Serialize};

/// One problem, naming what to fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigProblem {
    /// In a policy document: `rulesets`, `processing_units`, `identities`,
    /// `peers`, `local`, `external_networks`, `enforcer_profile`; else
    /// `document` (it does not parse), `request` (the apply itself), `state`
    /// (the state file) or `fleet`. Empty for a setting of a configuration
    /// file, whose `field` is then the whole path.
    pub resource: String,
    /// The resource's name (or identity number); empty when not applicable.
    pub name: String,
    /// The field within the resource (`incoming[2].ports`), or a setting's
    /// path (`workers[1].queue`).
    pub field: String,
    /// The offending value as written (empty when not echoed).
    pub value: String,
    /// The whole message as an operator reads it, where it is first.
    pub message: String,
}

impl ConfigProblem {
    pub fn new(resource: &str, name: &str, field: &str, value: &str, message: String) -> ConfigProblem {
        ConfigProblem {
            resource: resource.to_owned(),
            name: name.to_owned(),
            field: field.to_owned(),
            value: value.to_owned(),
            message,
        }
    }

    /// A setting of a configuration file: `path: what`.
    pub fn setting(path: impl Into<String>, what: impl fmt::Display) -> ConfigProblem {
        let field = path.into();
        let message = format!("{field}: {what}");
        ConfigProblem { resource: String::new(), name: String::new(), field, value: String::new(), message }
    }

    /// The last entry of a list that was cut: "and K more problems".
    pub fn more(more: usize) -> ConfigProblem {
        ConfigProblem::new(
            "request",
            "",
            "errors",
            &more.to_string(),
            format!("and {more} more problem{} (fix the ones above first)", if more == 1 { "" } else { "s" }),
        )
    }

    /// The problem with every echoed part cut short: the value, name and
    /// field to [`VALUE_MAX`] (and where the message quotes them, there too),
    /// the message to [`MESSAGE_MAX`].
    pub fn bounded(self) -> ConfigProblem {
        let mut message = self.message;
        for part in [&self.value, &self.name, &self.field] {
            if part.len() > VALUE_MAX && message.contains(part.as_str()) {
                message = message.replace(part.as_str(), &cut(part, VALUE_MAX));
            }
        }
        ConfigProblem {
            resource: cut(&self.resource, VALUE_MAX),
            name: cut(&self.name, VALUE_MAX),
            field: cut(&self.field, VALUE_MAX),
            value: cut(&self.value, VALUE_MAX),
            message: cut(&message, MESSAGE_MAX),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The longest value (and name, field) a problem echoes, in bytes.
pub const VALUE_MAX: usize = 64;
/// The longest message a problem carries, in bytes.
pub const MESSAGE_MAX: usize = 512;

/// `s` cut to at most `max` bytes (on a character boundary), followed by
/// "… (N bytes)" when it was cut.
pub fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}

/// At most `max` problems, each [`ConfigProblem::bounded`], then one that
/// says how many more there were.
pub fn bounded(problems: Vec<ConfigProblem>, max: usize) -> Vec<ConfigProblem> {
    let total = problems.len();
    let mut out: Vec<ConfigProblem> = problems.into_iter().take(max).map(ConfigProblem::bounded).collect();
    if total > max {
        out.push(ConfigProblem::more(total - max));
    }
    out
}

/// Every problem's message, one per line (for a panic or a log).
pub fn lines(problems: &[ConfigProblem]) -> String {
    problems.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_parts_and_lists_are_cut() {
        let huge = "x".repeat(5 << 20);
        let p = ConfigProblem::new("document", &huge, "subject", &huge, format!("selector {huge:?}: {huge}")).bounded();
        let short = format!("{}… ({} bytes)", "x".repeat(VALUE_MAX), 5 << 20);
        assert_eq!((&p.value, &p.name), (&short, &short));
        assert!(p.message.starts_with(&format!("selector {short:?}")), "{}", p.message);
        assert!(p.message.len() <= MESSAGE_MAX + 32, "{}", p.message.len());
        let many = (0..5).map(|i| ConfigProblem::setting(format!("a[{i}]"), "bad")).collect();
        let cut_list = bounded(many, 3);
        assert_eq!(cut_list.len(), 4);
        assert_eq!(cut_list[2].to_string(), "a[2]: bad");
        assert_eq!(cut_list[3].message, "and 2 more problems (fix the ones above first)");
        assert_eq!(ConfigProblem::more(1).message, "and 1 more problem (fix the ones above first)");
        // multi-byte text is cut on a character boundary
        assert_eq!(cut("ééé", 3), "é… (6 bytes)");
    }

    #[test]
    fn a_setting_is_its_path_then_what_is_wrong() {
        let p = ConfigProblem::setting("workers[1].queue", "7 is out of range");
        assert_eq!((p.resource.as_str(), p.field.as_str()), ("", "workers[1].queue"));
        assert_eq!(p.to_string(), "workers[1].queue: 7 is out of range");
    }
}

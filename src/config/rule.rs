//! Rule syntax shared by DNS request/response rules and routing rules.
//!
//! dae's syntax: `cond && !cond && ... -> target`, each condition a function
//! call `name(arg, key: value, 'quoted value')`. This module only parses the
//! text into a `Rule`; what the functions mean is decided by the caller
//! (`config::uci` for checking, `controller::rules` for matching).
//!
//! A `key: value` argument needs a plain word before the colon and must not
//! read as an IP address or network (`2001:db8::/32` and `fe80::1` are
//! values); quotes keep commas, parentheses and colons inside a value.

/// A parsed rule: all conditions must hold, then `target` applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub conditions: Vec<Condition>,
    pub target: Target,
}

/// `[!]function(args...)`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub negated: bool,
    pub function: String,
    pub args: Vec<Arg>,
}

/// `value` or `key: value`; quoted values have their quotes removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg {
    pub key: Option<String>,
    pub value: String,
}

/// `-> name` or `-> name(args...)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub args: Vec<Arg>,
}

/// Splits `text` at every top-level occurrence of `sep` (outside quotes and
/// parentheses). Fails on an unterminated quote or unbalanced parentheses.
fn split_top(text: &str, sep: &str) -> Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut start = 0;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i] as char;
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '(' => depth += 1,
            None if c == ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!("unmatched ')' at column {}", i + 1));
                }
            }
            None if depth == 0 && bytes[i..].starts_with(sep.as_bytes()) => {
                parts.push(text[start..i].to_string());
                i += sep.len();
                start = i;
                continue;
            }
            None => {}
        }
        i += 1;
    }
    if let Some(q) = quote {
        return Err(format!("unterminated {q}quote{q}"));
    }
    if depth != 0 {
        return Err("unbalanced parentheses: a '(' is never closed".into());
    }
    parts.push(text[start..].to_string());
    Ok(parts)
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `s` reads as an IP address or network, which may contain ':'.
fn looks_like_ip(s: &str) -> bool {
    let addr = s.split('/').next().unwrap_or(s);
    addr.parse::<std::net::IpAddr>().is_ok()
}

fn unquote(v: &str) -> Result<String, String> {
    let v = v.trim();
    for q in ['\'', '"'] {
        if let Some(rest) = v.strip_prefix(q) {
            return match rest.strip_suffix(q) {
                Some(inner) if !inner.contains(q) => Ok(inner.to_string()),
                _ => Err(format!("bad quoting in {v}")),
            };
        }
    }
    if v.contains(['\'', '"']) {
        return Err(format!("a quote inside the unquoted value {v}"));
    }
    if v.contains(['(', ')']) {
        return Err(format!("parentheses inside {v} (quote the value)"));
    }
    if v.chars().any(char::is_whitespace) {
        return Err(format!("spaces inside {v} (quote the value)"));
    }
    Ok(v.to_string())
}

fn parse_arg(raw: &str) -> Result<Arg, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("an empty argument".into());
    }
    if !raw.starts_with(['\'', '"']) && !looks_like_ip(raw) {
        if let Some((k, v)) = raw.split_once(':') {
            let k = k.trim();
            if is_ident(k) {
                let value = unquote(v)?;
                if value.is_empty() {
                    return Err(format!("no value after '{k}:'"));
                }
                return Ok(Arg {
                    key: Some(k.to_string()),
                    value,
                });
            }
        }
    }
    Ok(Arg {
        key: None,
        value: unquote(raw)?,
    })
}

/// `name` or `name(args)`; `need_args`: the parentheses are required.
fn parse_call(text: &str, need_args: bool) -> Result<(String, Vec<Arg>), String> {
    let text = text.trim();
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    let name = &text[..end];
    if name.is_empty() || !is_ident(name) {
        return Err(if text.is_empty() {
            "a condition is missing (nothing between '&&'s, or before '->')".into()
        } else {
            format!("expected a function name at '{text}'")
        });
    }
    let rest = text[end..].trim();
    if rest.is_empty() {
        return if need_args {
            Err(format!(
                "'{name}' needs its arguments in parentheses: {name}(...)"
            ))
        } else {
            Ok((name.to_string(), Vec::new()))
        };
    }
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("expected '{name}(...)', found '{text}'"))?;
    if inner.trim().is_empty() {
        return Err(format!("'{name}()' has no arguments"));
    }
    let args = split_top(inner, ",")?
        .iter()
        .map(|a| parse_arg(a).map_err(|e| format!("in {name}(...): {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((name.to_string(), args))
}

/// Parses `[!]f(args) && [!]g(args) ...` (a rule's left side, or a
/// group's node filter).
pub fn parse_conditions(conds: &str) -> Result<Vec<Condition>, String> {
    if split_top(conds, "||")?.len() > 1 {
        return Err("'||' is not supported: write one rule per alternative".into());
    }
    let mut conditions = Vec::new();
    for part in split_top(conds, "&&")? {
        let part = part.trim();
        let (negated, body) = match part.strip_prefix('!') {
            Some(b) => (true, b),
            None => (false, part),
        };
        let (function, args) = parse_call(body, true)?;
        conditions.push(Condition {
            negated,
            function,
            args,
        });
    }
    Ok(conditions)
}

/// Parses one rule line.
pub fn parse(text: &str) -> Result<Rule, String> {
    let halves = split_top(text, "->")?;
    let (conds, target) = match halves.as_slice() {
        [_] => return Err("missing '-> target'".into()),
        [c, t] => (c, t),
        _ => return Err("more than one '->'".into()),
    };
    let conditions = parse_conditions(conds)?;
    let target_text = target.trim();
    if target_text.is_empty() {
        return Err("missing the target after '->'".into());
    }
    let (name, args) = parse_call(target_text, false)?;
    Ok(Rule {
        conditions,
        target: Target { name, args },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arg(k: Option<&str>, v: &str) -> Arg {
        Arg {
            key: k.map(String::from),
            value: v.into(),
        }
    }

    #[test]
    fn parses_the_contract_examples() {
        let r = parse("qname(suffix: lan) -> asis").unwrap();
        assert_eq!(r.conditions.len(), 1);
        assert_eq!(r.conditions[0].function, "qname");
        assert_eq!(r.conditions[0].args, vec![arg(Some("suffix"), "lan")]);
        assert_eq!(r.target.name, "asis");

        let r = parse("upstream(dns_b) && ip(192.0.2.0/24) -> dns_a").unwrap();
        assert_eq!(r.conditions[1].args, vec![arg(None, "192.0.2.0/24")]);

        let r = parse("dport(53) && l4proto(udp) -> direct").unwrap();
        assert_eq!(r.conditions.len(), 2);
        assert_eq!(r.target.name, "direct");
    }

    #[test]
    fn keys_values_quotes_and_negation() {
        let r = parse(
            r#"!qname(suffix: a.b, keyword: x, full: y, regex: '^(a|b),c$', "quoted:colon") && qtype(a, aaaa) -> x(must)"#,
        )
        .unwrap();
        let c = &r.conditions[0];
        assert!(c.negated);
        assert_eq!(
            c.args,
            vec![
                arg(Some("suffix"), "a.b"),
                arg(Some("keyword"), "x"),
                arg(Some("full"), "y"),
                arg(Some("regex"), "^(a|b),c$"),
                arg(None, "quoted:colon"),
            ]
        );
        assert_eq!(r.target.args, vec![arg(None, "must")]);
    }

    #[test]
    fn ipv6_values_are_not_keys() {
        let r = parse("ip(2001:db8::/32, fe80::1, ::1) -> a").unwrap();
        let values: Vec<_> = r.conditions[0]
            .args
            .iter()
            .map(|a| (a.key.clone(), a.value.as_str()))
            .collect();
        assert_eq!(
            values,
            vec![(None, "2001:db8::/32"), (None, "fe80::1"), (None, "::1")]
        );
        let r = parse("domain(geosite:cn) -> a").unwrap();
        assert_eq!(r.conditions[0].args, vec![arg(Some("geosite"), "cn")]);
    }

    #[test]
    fn refuses_broken_rules_with_a_reason() {
        for (text, expect) in [
            ("", "missing '-> target'"),
            ("qname(a)", "missing '-> target'"),
            ("qname(a) ->", "missing the target"),
            ("qname(a -> b", "unbalanced"),
            ("qname(a)) -> b", "unmatched ')'"),
            ("qname('a) -> b", "unterminated"),
            ("(a) -> b", "expected a function name"),
            ("qname(a) && -> b", "a condition is missing"),
            ("qname -> b", "needs its arguments"),
            ("qname() -> b", "has no arguments"),
            ("qname(a,,b) -> c", "an empty argument"),
            ("qname(a) || qtype(a) -> b", "'||' is not supported"),
            ("qname(a) -> b -> c", "more than one '->'"),
            ("qname(suffix: ) -> b", "no value after 'suffix:'"),
            ("qname(a b) -> c", "spaces inside"),
        ] {
            let err = parse(text).expect_err(text);
            assert!(err.contains(expect), "{text:?}: {err}");
        }
    }
}

//! UCI quoting as OpenWrt writes it, made readable for `uci_rs`.
//!
//! libuci (and so `uci set`, `uci commit` and LuCI) writes a value that
//! holds a single quote as `'it'\''s'`: quoted parts and escaped characters
//! run together into one word, as in the shell. `uci_rs` reads one quoted
//! string per word and keeps backslashes inside double quotes, so such a
//! file would be refused whole. Each line is split here the way libuci
//! splits it, and every word is written back in the one form `uci_rs`
//! reads the same way: single quotes, or double quotes when the value holds
//! a single quote (`uci_rs` takes both verbatim, backslashes included). A
//! value holding both kinds of quote has no such form and is refused with
//! its line number.
//!
//! Neighbours: `uci` (runs this before parsing).

/// The text with every word re-quoted, or the first line that cannot be.
pub fn normalize(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}", n + 1);
        let words = split(line).map_err(at)?;
        for (i, w) in words.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            // The keyword (config, option, list, package) and the section
            // type or option name are identifiers, written bare; values
            // are quoted.
            if i < 2 {
                if w.is_empty()
                    || !w
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    return Err(at(format!("{w:?} is not a valid UCI identifier")));
                }
                out.push_str(w);
            } else {
                out.push_str(&quote(w).map_err(at)?);
            }
        }
        out.push('\n');
    }
    Ok(out)
}

/// One line's words, quotes and escapes resolved; a `#` outside quotes
/// starts a comment.
fn split(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\r' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '#' if !in_word => break,
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("a single quote is not closed".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => word.push(c),
                            None => return Err("a double quote is not closed".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("a double quote is not closed".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    word.push(c);
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

fn quote(value: &str) -> Result<String, String> {
    if !value.contains('\'') {
        Ok(format!("'{value}'"))
    } else if !value.contains('"') {
        // uci_rs takes what is between double quotes as it is.
        Ok(format!("\"{value}\""))
    } else {
        Err(format!(
            "{value:?} holds both a single and a double quote, which this reader cannot \
             take; use only one kind of quote in the value"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libuci_escapes_become_one_readable_word() {
        let text =
            "config dns 'dns'\n\tlist request_rule 'qname(regex: '\\''^ads'\\'') -> reject'\n";
        assert_eq!(
            normalize(text).unwrap(),
            "config dns 'dns'\nlist request_rule \"qname(regex: '^ads') -> reject\"\n"
        );
    }

    #[test]
    fn plain_forms_keep_their_values() {
        let text =
            "config dae config # trailing comment\n\toption a \"x y\"\n\toption b 'p'q\"r\"\n";
        assert_eq!(
            normalize(text).unwrap(),
            "config dae 'config'\noption a 'x y'\noption b 'pqr'\n"
        );
        assert_eq!(normalize("# only a comment\n\n").unwrap(), "\n\n");
    }

    #[test]
    fn what_cannot_be_written_back_is_named() {
        let e = normalize("config a 'b'\n\toption x 'it'\\''s \"q\"'\n").unwrap_err();
        assert!(e.starts_with("line 2: "), "{e}");
        assert!(normalize("\toption x 'open\n")
            .unwrap_err()
            .contains("not closed"));
    }
}

//! The configured apt sources for Debian bookworm.
//!
//! The image is built from the same archive the build host uses, so that a machine with a
//! local mirror or a snapshot pin builds from it without further flags. Both formats apt reads
//! are understood: one-line `sources.list` entries and deb822 `.sources` stanzas. The result
//! is one-line entries (what both `apt-get -o Dir::Etc::SourceList=` and mmdebstrap accept),
//! in the order apt would read them, so the same configuration always gives the same text.

use std::path::Path;

use super::ImageError;

/// The suite the images are built from.
pub const SUITE: &str = "bookworm";

/// Reads `APT_DIR/sources.list` and `APT_DIR/sources.list.d/*.{list,sources}` and returns the
/// `deb` entries whose suite is bookworm or one of its companions (`bookworm-updates`,
/// `bookworm-security`), one per line.
pub fn bookworm_sources(apt_dir: &Path) -> Result<String, ImageError> {
    let mut files = vec![apt_dir.join("sources.list")];
    let d = apt_dir.join("sources.list.d");
    if let Ok(rd) = std::fs::read_dir(&d) {
        let mut v: Vec<_> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "list" || e == "sources"))
            .collect();
        v.sort();
        files.extend(v);
    }
    let mut out = String::new();
    for f in &files {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        let lines = if f.extension().is_some_and(|e| e == "sources") {
            from_deb822(&text)
        } else {
            from_one_line(&text)
        };
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
    }
    if out.is_empty() {
        return Err(ImageError::NoAptSource {
            searched: format!("{}/sources.list{{,.d/}}", apt_dir.display()),
        });
    }
    Ok(out)
}

fn is_bookworm(suite: &str) -> bool {
    suite == SUITE || suite.starts_with("bookworm-")
}

fn from_one_line(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| l.starts_with("deb ") || l.starts_with("deb\t"))
        .filter(|l| {
            // deb [options] URI SUITE COMPONENTS...: the suite is the word after the URI.
            let rest = l[3..].trim_start();
            let rest = match rest.strip_prefix('[') {
                Some(r) => r.split_once(']').map(|(_, r)| r).unwrap_or(""),
                None => rest,
            };
            rest.split_whitespace().nth(1).is_some_and(is_bookworm)
        })
        .map(String::from)
        .collect()
}

fn from_deb822(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in stanza.lines() {
            if line.starts_with('#') {
                continue;
            }
            if line.starts_with(' ') || line.starts_with('\t') {
                if let Some(last) = fields.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line.trim());
                }
                continue;
            }
            if let Some((k, v)) = line.split_once(':') {
                fields.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let get = |k: &str| {
            fields
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        };
        if get("enabled") == "no" || !get("types").split_whitespace().any(|t| t == "deb") {
            continue;
        }
        let signed = get("signed-by");
        // An inline key block cannot be expressed in a one-line entry; the archive keyring
        // is then what apt falls back to.
        let opt = if signed.is_empty() || signed.contains(' ') {
            String::new()
        } else {
            format!("[signed-by={signed}] ")
        };
        for uri in get("uris").split_whitespace() {
            for suite in get("suites").split_whitespace().filter(|s| is_bookworm(s)) {
                out.push(format!("deb {opt}{uri} {suite} {}", get("components")));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_and_one_line_entries_are_kept_for_bookworm_only() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sources.list.d")).unwrap();
        std::fs::write(
            d.path().join("sources.list"),
            "deb http://m/debian bookworm main # c\ndeb [arch=amd64] http://x nodistro main\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("sources.list.d/debian.sources"),
            "Types: deb\n# http://snapshot\nURIs: http://deb.debian.org/debian\nSuites: bookworm \
             bookworm-updates\nComponents: main\nSigned-By: /k.gpg\n\nTypes: deb-src\nURIs: \
             http://s\nSuites: bookworm\nComponents: main\n",
        )
        .unwrap();
        let s = bookworm_sources(d.path()).unwrap();
        assert_eq!(
            s,
            "deb http://m/debian bookworm main\n\
             deb [signed-by=/k.gpg] http://deb.debian.org/debian bookworm main\n\
             deb [signed-by=/k.gpg] http://deb.debian.org/debian bookworm-updates main\n"
        );
    }

    #[test]
    fn no_bookworm_source_is_an_error_naming_the_place() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("sources.list"), "deb http://x trixie main\n").unwrap();
        let e = bookworm_sources(d.path()).unwrap_err().to_string();
        assert!(e.contains("no apt source for Debian bookworm"), "{e}");
        assert!(e.contains("sources.list"), "{e}");
    }
}

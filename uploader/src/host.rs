//! The host names the dashboard answers to, as `--allowed-host` gives them: parsed with
//! the command line (`cli`), enforced by the dashboard's guard (`dashboard::guard`).

/// A name (and scheme) the dashboard answers to, from `--allowed-host`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedHost {
    /// `https`: the origin browsers see (a TLS proxy in front); otherwise `http`.
    pub https: bool,
    /// Host, lower case (IPv6 in brackets).
    pub host: String,
    /// Port (the scheme's default when none was given).
    pub port: u16,
}

impl AllowedHost {
    /// The scheme's default port.
    pub fn default_port(&self) -> u16 {
        if self.https {
            443
        } else {
            80
        }
    }

    /// The `Host` header values that name it.
    pub fn host_values(&self) -> Vec<String> {
        let mut v = vec![format!("{}:{}", self.host, self.port)];
        if self.port == self.default_port() {
            v.push(self.host.clone());
        }
        v
    }

    /// The `Origin` a browser sends for a page of it.
    pub fn origin(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        if self.port == self.default_port() {
            format!("{scheme}://{}", self.host)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.origin())
    }
}

/// Parses an `--allowed-host` value: `name[:port]` (served over http) or
/// `http(s)://name[:port]` (the origin browsers see, e.g. behind a TLS proxy). The name is
/// a DNS name or an IP address; no path, credentials or wildcard.
pub fn parse_allowed_host(s: &str) -> Result<AllowedHost, String> {
    let s = s.trim();
    let lower = s.to_ascii_lowercase();
    let with_scheme = if lower.starts_with("http://") || lower.starts_with("https://") {
        s.to_string()
    } else if s.contains("://") {
        return Err(format!("{s:?}: the scheme is http or https"));
    } else {
        format!("http://{s}")
    };
    let url = url::Url::parse(&with_scheme)
        .map_err(|e| format!("{s:?} is not a host name[:port]: {e}"))?;
    if !url.username().is_empty()
        || url.password().is_some()
        || url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
        || s.contains('*')
    {
        return Err(format!(
            "{s:?}: give a host name and an optional port (and scheme), nothing else"
        ));
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("{s:?} has no host"))?
        .to_ascii_lowercase();
    let port = url
        .port_or_known_default()
        .ok_or_else(|| format!("{s:?} has no port"))?;
    Ok(AllowedHost {
        https: url.scheme() == "https",
        host,
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_hosts_parse() {
        let h = parse_allowed_host("Dash.Example.com").unwrap();
        assert_eq!(
            (h.https, h.host.as_str(), h.port),
            (false, "dash.example.com", 80)
        );
        let h = parse_allowed_host("https://dash.example.com").unwrap();
        assert_eq!((h.https, h.port), (true, 443));
        let h = parse_allowed_host("dash.example.com:8443").unwrap();
        assert_eq!((h.https, h.port), (false, 8443));
        let h = parse_allowed_host("[::1]:8780").unwrap();
        assert_eq!(h.host, "[::1]");
        assert_eq!(
            parse_allowed_host("http://10.0.0.5:8780/")
                .unwrap()
                .origin(),
            "http://10.0.0.5:8780"
        );
        for bad in [
            "",
            "*.example.com",
            "ftp://h",
            "h/path",
            "u:p@h",
            "h?x",
            "h:0x",
            "h:99999",
        ] {
            assert!(parse_allowed_host(bad).is_err(), "{bad:?}");
        }
    }
}

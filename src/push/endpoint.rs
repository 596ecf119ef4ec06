//! The SSRF guard. Parley POSTs to URLs its users supply, so a subscription's
//! endpoint must be an `https` URL on the default port whose host is, and resolves
//! to, public unicast addresses only: never loopback, private, CGNAT, link-local
//! (the cloud metadata address among them), unique-local, multicast, broadcast,
//! documentation or other special ranges, nor an IPv4-mapped/embedded form of one.
//!
//! It is checked twice: when subscribing (the host is resolved and every address
//! must be public) and when sending, by [`GuardedResolver`], the HTTP client's DNS
//! resolver, which drops non-public addresses — so a name that later resolves to
//! 127.0.0.1 (DNS rebinding) reaches nothing. reqwest does not resolve IP-literal
//! hosts, so [`check_url`] refuses those itself, and the engine runs it again before
//! each send. `push.allow_insecure_endpoints` (tests only) turns all of it off.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::Url;

/// Longest endpoint accepted (real ones are under 500 characters).
pub const MAX_ENDPOINT_LEN: usize = 1024;

/// Resolving a host at subscribe time waits at most this long.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// Whether `ip` is a public unicast address a push service may have.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0 // 0.0.0.0/8 "this network"
        || a == 10 // private
        || a == 127 // loopback
        || (a == 100 && (64..128).contains(&b)) // 100.64/10 CGNAT
        || (a == 169 && b == 254) // link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b)) // private
        || (a == 192 && b == 168) // private
        || (a == 192 && b == 0 && c == 0) // 192.0.0/24 IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || a >= 224) // multicast 224/4, reserved 240/4, broadcast
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // IPv4-mapped (::ffff:a.b.c.d) and NAT64 (64:ff9b::a.b.c.d): the embedded address decides.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return is_public_v4(v4);
    }
    // Only global unicast 2000::/3 …
    if s[0] & 0xe000 != 0x2000 {
        return false; // ::, ::1, IPv4-compatible, fc00::/7, fe80::/10, ff00::/8, …
    }
    // … without its special blocks.
    let ietf = s[0] == 0x2001 && s[1] < 0x0200; // 2001::/23 (Teredo, benchmarking, ORCHID)
    let documentation = (s[0] == 0x2001 && s[1] == 0x0db8) || (s[0] & 0xfff0) == 0x3ff0;
    let six_to_four = s[0] == 0x2002; // an IPv4 address inside
    !(ietf || documentation || six_to_four)
}

/// Why an endpoint is refused (the message of the 400 `invalid_endpoint`).
pub type Refusal = &'static str;

/// Checks the URL's shape and, for an IP-literal host, the address. A host name is
/// left to [`resolve_public`] (subscribe time) and [`GuardedResolver`] (send time).
pub fn check_url(endpoint: &str, allow_insecure: bool) -> Result<Url, Refusal> {
    if endpoint.len() > MAX_ENDPOINT_LEN {
        return Err("endpoint is longer than 1024 characters");
    }
    let url = Url::parse(endpoint).map_err(|_| "endpoint is not a URL")?;
    match url.scheme() {
        "https" => {}
        "http" if allow_insecure => {}
        _ => return Err("endpoint must be an https URL"),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("endpoint must not carry credentials");
    }
    if url.as_str().len() > MAX_ENDPOINT_LEN {
        return Err("endpoint is longer than 1024 characters");
    }
    if allow_insecure {
        return url
            .host()
            .map(|_| url.clone())
            .ok_or("endpoint has no host");
    }
    // Push services listen on 443; another port would let a subscription knock on
    // other services of a public host.
    if url.port().is_some() {
        return Err("endpoint must use the default https port");
    }
    match url.host() {
        None => Err("endpoint has no host"),
        Some(url::Host::Ipv4(ip)) if !is_public_v4(ip) => {
            Err("endpoint must be on a public address")
        }
        Some(url::Host::Ipv6(ip)) if !is_public_v6(ip) => {
            Err("endpoint must be on a public address")
        }
        Some(_) => Ok(url),
    }
}

/// Subscribe time: the host must resolve, and only to public addresses.
pub async fn resolve_public(url: &Url, allow_insecure: bool) -> Result<(), Refusal> {
    if allow_insecure {
        return Ok(());
    }
    let Some(url::Host::Domain(host)) = url.host() else {
        return Ok(()); // an IP literal, checked by `check_url`
    };
    let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, 443)))
        .await
        .map_err(|_| "endpoint's host does not resolve")?
        .map_err(|_| "endpoint's host does not resolve")?;
    let mut any = false;
    for addr in found {
        if !is_public(addr.ip()) {
            return Err("endpoint must be on a public address");
        }
        any = true;
    }
    if any {
        Ok(())
    } else {
        Err("endpoint's host does not resolve")
    }
}

/// The HTTP client's resolver: only public addresses are ever connected to.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    pub allow_insecure: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_insecure = self.allow_insecure;
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|a| allow_insecure || is_public(a.ip()))
                .collect();
            if found.is_empty() {
                return Err("the push service's host has no public address".into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

/// `keys.p256dh`: an uncompressed P-256 point (65 bytes) that is on the curve.
pub fn parse_p256dh(text: &str) -> Result<Vec<u8>, Refusal> {
    let bytes = decode(text, 100).ok_or("keys.p256dh is not base64url")?;
    if bytes.len() != 65 || bytes[0] != 4 {
        return Err("keys.p256dh must be an uncompressed P-256 point (65 bytes)");
    }
    p256::PublicKey::from_sec1_bytes(&bytes).map_err(|_| "keys.p256dh is not a P-256 point")?;
    Ok(bytes)
}

/// `keys.auth`: the 16-byte authentication secret.
pub fn parse_auth(text: &str) -> Result<Vec<u8>, Refusal> {
    let bytes = decode(text, 32).ok_or("keys.auth is not base64url")?;
    if bytes.len() != 16 {
        return Err("keys.auth must be 16 bytes");
    }
    Ok(bytes)
}

/// base64url, padded or not (browsers send it unpadded; some libraries pad).
fn decode(text: &str, max_len: usize) -> Option<Vec<u8>> {
    if text.len() > max_len {
        return None;
    }
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(s: &str) -> bool {
        is_public(s.parse().unwrap())
    }

    #[test]
    fn special_addresses_are_not_public() {
        for s in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::127.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "2001::1",
            "2002:7f00:1::1",
            "3fff::1",
            "100::1",
        ] {
            assert!(!public(s), "{s} counted as public");
        }
    }

    #[test]
    fn ordinary_addresses_are_public() {
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "192.169.0.1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2a00:1450:4001:82b::200a",
            "2606:4700::1111",
        ] {
            assert!(public(s), "{s} counted as not public");
        }
    }

    #[test]
    fn urls_are_checked_before_any_lookup() {
        let ok = |u: &str| check_url(u, false).is_ok();
        assert!(ok("https://fcm.googleapis.com/fcm/send/abc"));
        assert!(ok("https://[2606:4700::1111]/x"));
        for bad in [
            "http://push.example.net/x",
            "ftp://push.example.net/x",
            "https://127.0.0.1/x",
            "https://10.0.0.1/x",
            "https://[::1]/x",
            "https://[::ffff:7f00:1]/x",
            "https://169.254.169.254/latest/meta-data",
            "https://0x7f000001/x",
            "https://2130706433/x",
            "https://user:pw@push.example.net/x",
            "https://push.example.net:8443/x",
            "not a url",
            "",
        ] {
            assert!(!ok(bad), "{bad} accepted");
        }
        let long = format!("https://push.example.net/{}", "a".repeat(1100));
        assert!(!ok(&long));
        // Tests only: http and loopback.
        assert!(check_url("http://127.0.0.1:4000/x", true).is_ok());
    }

    #[test]
    fn subscription_keys_are_validated() {
        let secret = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        let point = secret.public_key().to_encoded_point(false);
        let good = URL_SAFE_NO_PAD.encode(point.as_bytes());
        assert!(parse_p256dh(&good).is_ok());
        assert!(parse_p256dh(&format!("{good}=")).is_ok());
        let mut off_curve = point.as_bytes().to_vec();
        off_curve[64] ^= 1;
        assert!(parse_p256dh(&URL_SAFE_NO_PAD.encode(off_curve)).is_err());
        assert!(parse_p256dh(&URL_SAFE_NO_PAD.encode([4u8; 33])).is_err());
        assert!(parse_p256dh("***").is_err());
        assert!(parse_auth(&URL_SAFE_NO_PAD.encode([1u8; 16])).is_ok());
        assert!(parse_auth(&URL_SAFE_NO_PAD.encode([1u8; 15])).is_err());
    }
}

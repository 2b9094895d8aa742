//! Optional mutual TLS: a client certificate that chains to the configured client CA
//! identifies a principal by its subject common name. The name must be a registered,
//! active principal; the caller gets the configured mTLS scopes (least privilege: read
//! and load by default). A bearer token, when also sent, takes precedence.

use rustls::pki_types::CertificateDer;

/// The identity a verified client certificate claims (its subject CN), carried to the
/// handlers as a request extension of the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIdentity(pub String);

/// The subject common name of a certificate, if it has exactly one that is UTF-8.
#[must_use]
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let ee = webpki::EndEntityCert::try_from(cert).ok()?;
    subject_cn(ee.subject())
}

/// One DER element: (tag, contents, rest). Short and long definite lengths only.
fn element(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, rest) = rest.split_at(n);
        (
            bytes.iter().fold(0usize, |a, &x| (a << 8) | usize::from(x)),
            rest,
        )
    };
    if rest.len() < len {
        return None;
    }
    let (content, rest) = rest.split_at(len);
    Some((tag, content, rest))
}

/// Finds the common name (OID 2.5.4.3) in a Name's contents (the RDN sequence, as
/// webpki returns it without the outer SEQUENCE header).
fn subject_cn(mut rdns: &[u8]) -> Option<String> {
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    let mut found = None;
    while !rdns.is_empty() {
        let (tag, set, rest) = element(rdns)?;
        rdns = rest;
        if tag != 0x31 {
            return None;
        }
        let mut atvs = set;
        while !atvs.is_empty() {
            let (tag, atv, rest) = element(atvs)?;
            atvs = rest;
            if tag != 0x30 {
                return None;
            }
            let (otag, oid, value) = element(atv)?;
            if otag != 0x06 || oid != CN {
                continue;
            }
            let (vtag, v, _) = element(value)?;
            // UTF8String, PrintableString or IA5String.
            if !matches!(vtag, 0x0c | 0x13 | 0x16) || found.is_some() {
                return None;
            }
            found = Some(String::from_utf8(v.to_vec()).ok()?);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_common_name_is_read_from_a_generated_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["client.test".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Warden tests");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "svc-scoring");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(common_name(cert.der()).as_deref(), Some("svc-scoring"));
        let mut no_cn = rcgen::CertificateParams::new(vec!["x.test".to_owned()]).unwrap();
        no_cn.distinguished_name = rcgen::DistinguishedName::new();
        let cert = no_cn.self_signed(&key).unwrap();
        assert_eq!(common_name(cert.der()), None);
    }

    #[test]
    fn malformed_names_yield_nothing() {
        for bad in [
            &[0x31u8, 0x05, 0x30][..],
            &[0x31, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x30, 0x00],
        ] {
            assert_eq!(subject_cn(bad), None);
        }
    }
}

//! Device identifiers: `OUI-ProductClass-SerialNumber`, each part escaped as GenieACS does, so
//! identifiers (and every integration keyed on them) carry over from GenieACS unchanged.

use std::fmt::Write;

/// Escapes one part: every byte of the UTF-8 encoding except `A–Z a–z 0–9 _` becomes `%XX`.
pub fn escape_part(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    for byte in part.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'_' {
            out.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// The identifier of a device; the product class part is left out when it is empty.
pub fn device_id(oui: &str, product_class: &str, serial_number: &str) -> String {
    if product_class.is_empty() {
        format!("{}-{}", escape_part(oui), escape_part(serial_number))
    } else {
        format!("{}-{}-{}", escape_part(oui), escape_part(product_class), escape_part(serial_number))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_identities_escape_like_genieacs() {
        // The file names of the real exports in shared/cpe-data carry GenieACS's own ids.
        assert_eq!(device_id("C0B101", "ZXHN H199A", "ZTEYH86LCN10105"), "C0B101-ZXHN%20H199A-ZTEYH86LCN10105");
        assert_eq!(device_id("9075BC", "G-1425G-A", "ALCLFC265D6F"), "9075BC-G%2D1425G%2DA-ALCLFC265D6F");
        assert_eq!(device_id("00259E", "EG8145V5", "48575443A94196A5"), "00259E-EG8145V5-48575443A94196A5");
    }

    #[test]
    fn empty_product_class_is_omitted_and_utf8_is_escaped_per_byte() {
        assert_eq!(device_id("A00001", "", "S1"), "A00001-S1");
        assert_eq!(escape_part("é.x"), "%C3%A9%2Ex");
    }
}

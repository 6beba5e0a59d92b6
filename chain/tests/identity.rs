//! Secret key forms, their errors and redaction, and address display.

use soma_flow_chain::{Error, ObjectID, SecretKey, SomaAddress};

use crate::common;

const HEX: &str = "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20";
const BECH32: &str = "somaprivkey1qqqsyqcyq5rqwzqfpg9scrgwpugpzysnzs23v9ccrydpk8qarc0jqvt3src";

#[test]
fn every_form_gives_the_same_key() {
    let address = common::secret_key().address();
    for form in [
        HEX.to_owned(),
        format!("0x{HEX}"),
        format!("  {HEX}\n"),
        HEX.to_uppercase(),
        BECH32.to_owned(),
        BECH32.to_uppercase(),
    ] {
        assert_eq!(
            SecretKey::parse(&form).unwrap().address(),
            address,
            "{form}"
        );
    }
}

#[test]
fn errors_name_the_formats_and_never_echo_the_key() {
    let mut bad_checksum = BECH32.to_owned();
    bad_checksum.replace_range(BECH32.len() - 1.., "d");
    let bech32m = bech32::encode::<bech32::Bech32m>(
        bech32::Hrp::parse("somaprivkey").unwrap(),
        &[[0u8].as_slice(), &[7u8; 32]].concat(),
    )
    .unwrap();
    let wrong_flag = bech32::encode::<bech32::Bech32>(
        bech32::Hrp::parse("somaprivkey").unwrap(),
        &[[1u8].as_slice(), &[7u8; 32]].concat(),
    )
    .unwrap();
    let inputs = [
        &HEX[..62],                       // 31 bytes
        "zz02030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20",
        &bad_checksum,
        &bech32m,                         // Bech32m is not the SDK's checksum
        &wrong_flag,                      // not Ed25519
        "5bV6jUfhDHCQVA1WfKBUnXUsboJgoKgkzkKcxr3joew5", // Base58: not accepted
        "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon",
    ];
    for input in inputs {
        let err = SecretKey::parse(input).unwrap_err();
        assert!(matches!(err, Error::SecretKey), "{input}");
        let message = err.to_string();
        assert!(message.contains("64 hex digits") && message.contains("somaprivkey1"));
        assert!(message.contains("mnemonic"));
        // The key material is at the end of every form.
        assert!(
            !message.contains(&input[input.len() - 10..]),
            "error echoes {input}"
        );
    }
}

#[test]
fn debug_redacts_the_key() {
    let key = common::secret_key();
    let shown = format!("{key:?}");
    assert!(!shown.contains(&HEX[..16]) && !shown.contains(&BECH32[12..30]));
    assert!(shown.contains("redacted"));
    assert!(shown.contains(&key.address().to_string()));
}

#[test]
fn mnemonic_of_section_4() {
    let phrase = format!("{} about", "abandon ".repeat(11).trim_end());
    let key = SecretKey::parse(&phrase).unwrap();
    assert_eq!(
        &*key.expose_hex(),
        "8869cb07178bf67e08d7c4abdf45487dbf379c9a452fcec2836854bf4a3d29b0"
    );
    assert_eq!(
        key.address().to_string(),
        "5e93a736d04fbb25737aa40bee40171ef79f65fae833749e3c089fe7cc2161f1"
    );
}

#[test]
fn display_forms_and_parsing() {
    let address: SomaAddress = "0x7573c697fa68450f04fa0dee2d39dcdc8a5ccf5db547f3e47638a6f8eeeec110"
        .parse()
        .unwrap();
    assert_eq!(address, common::secret_key().address());
    assert_eq!(
        address.to_string(),
        "7573c697fa68450f04fa0dee2d39dcdc8a5ccf5db547f3e47638a6f8eeeec110"
    );
    let id: ObjectID = "0x5".parse().unwrap();
    assert_eq!(id, ObjectID::SYSTEM_STATE);
    assert_eq!(id.to_string(), format!("0x{}5", "0".repeat(63)));
    assert_eq!(id.to_hex_literal(), "0x5");
    assert_eq!(ObjectID([0; 32]).to_hex_literal(), "0x0");
    let model = ObjectID([0x0a; 32]);
    assert_eq!(
        model.to_hex_literal(),
        format!("0x{}", &"0a".repeat(32)[1..])
    );
    // Short input needs 0x; 64 digits do not.
    assert!("5".parse::<SomaAddress>().is_err());
    assert!("0x".parse::<ObjectID>().is_err());
    assert!(format!("0x{}", "1".repeat(65)).parse::<ObjectID>().is_err());
    assert_eq!(
        "1".repeat(64).parse::<ObjectID>().unwrap(),
        ObjectID([0x11; 32])
    );
}

//! Secrets OpenBao lost or never got: the password written again, a lost root token (OpenBao
//! restarted), OpenBao not running yet.

use super::*;

#[test]
fn partly_synced_platform_waits_and_rewrites_a_password_openbao_lost() {
    // OpenBao restarted (dev mode): the synced Kubernetes Secret is still there, but
    // OpenBao answers 404 for the password.
    let mut o = everything_up();
    o.backend = Backend::from_kv_status(404);
    o.apps[0].health = "Progressing".into();
    let steps = plan(&o, &local()).expect("plan");
    assert_eq!(
        running(&steps),
        vec![
            &Action::WritePassword,
            &Action::WaitSynced,
            &Action::CheckGateway
        ]
    );
    assert!(
        step(&steps, &Action::WritePassword)
            .reason
            .contains("password lost from OpenBao")
    );
    assert!(
        step(&steps, &Action::WaitSynced)
            .reason
            .starts_with("waiting")
    );
}

#[test]
fn a_lost_openbao_root_token_restarts_openbao_and_writes_the_password_again() {
    // The token Secret was deleted: a new token is made, OpenBao (still running with the
    // old one) is restarted with it, and the password written into the empty OpenBao.
    let mut o = everything_up();
    o.backend_token_present = false;
    let steps = plan(&o, &local()).expect("plan");
    assert_eq!(
        running(&steps)[..3],
        [
            &Action::CreateBackendToken,
            &Action::RestartSecretBackend,
            &Action::WritePassword
        ]
    );
    assert!(
        step(&steps, &Action::CreateBackendToken)
            .reason
            .contains("lost")
    );
    // The token Secret is present but OpenBao refuses it.
    let mut o = everything_up();
    o.backend = Backend::from_kv_status(403);
    let steps = plan(&o, &local()).expect("plan");
    assert_eq!(
        running(&steps)[..2],
        [&Action::RestartSecretBackend, &Action::WritePassword]
    );
    assert!(
        step(&steps, &Action::RestartSecretBackend)
            .reason
            .contains("rejects the token")
    );
}

#[test]
fn openbao_not_running_yet_is_not_restarted_and_gets_the_password_later() {
    let mut o = everything_up();
    o.backend = Backend::NotRunning {
        reason: "no ready pod".into(),
    };
    let steps = plan(&o, &local()).expect("plan");
    assert!(!step(&steps, &Action::RestartSecretBackend).run);
    let write = step(&steps, &Action::WritePassword);
    assert!(
        write.run && write.reason.contains("once OpenBao runs"),
        "{write:?}"
    );
    assert_eq!(Backend::from_kv_status(200), Backend::PasswordPresent);
    assert_eq!(Backend::from_kv_status(401), Backend::TokenRejected);
    assert!(matches!(
        Backend::from_kv_status(503),
        Backend::NotRunning { .. }
    ));
}

//! Out-of-dialog requests rsipstack has no helper for: MESSAGE (OWN command frames,
//! c300x-protocol.md §8) and OPTIONS (the `check` probe). Builds the request and its client
//! transaction, answers one Digest challenge (RFC 3261 §22.2), returns the final response.

use std::time::Duration;

use rsipstack::dialog::authenticate::{Credential, handle_client_authenticate};
use rsipstack::sip::typed;
use rsipstack::sip::{Header, Method, Response, SipMessage, StatusCode, StatusCodeKind};
use rsipstack::transaction::endpoint::EndpointInnerRef;
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transaction::{Transaction, make_tag};
use rsipstack::transport::SipAddr;

use super::SipError;

/// One out-of-dialog request to `target`, sent to the intercom on our flow.
pub(super) struct OutOfDialog {
    pub endpoint: EndpointInnerRef,
    pub intercom: SipAddr,
    pub local: SipAddr,
    pub from: rsipstack::sip::Uri,
    pub target: rsipstack::sip::Uri,
    pub call_id: String,
    pub credential: Credential,
    pub timeout: Duration,
}

impl OutOfDialog {
    /// Sends `method` with an optional `(content type, body)`; the final response.
    pub async fn send(
        self,
        method: Method,
        body: Option<(&str, String)>,
    ) -> Result<Response, SipError> {
        let call_id = self.call_id.clone();
        match tokio::time::timeout(self.timeout, self.exchange(method, body)).await {
            Ok(r) => r,
            Err(_) => Err(SipError::Timeout { call_id }),
        }
    }

    async fn exchange(
        &self,
        method: Method,
        body: Option<(&str, String)>,
    ) -> Result<Response, SipError> {
        let err = |detail: String| SipError::Stack {
            call_id: self.call_id.clone(),
            detail,
        };
        let mut seq: u32 = 20;
        let via = self
            .endpoint
            .get_via(Some(self.local.clone()), None)
            .map_err(|e| err(e.to_string()))?;
        let from = typed::From {
            display_name: None,
            uri: self.from.clone(),
            params: vec![],
        }
        .with_tag(make_tag());
        let to = typed::To {
            display_name: None,
            uri: self.target.clone(),
            params: vec![],
        };
        let mut req = self.endpoint.make_request(
            method,
            self.target.clone(),
            via,
            from,
            to,
            seq,
            Some(self.call_id.clone().into()),
        );
        if let Some((ctype, text)) = body {
            req.headers.push(Header::ContentType(ctype.into()));
            req.body = text.into_bytes();
        }
        let key = TransactionKey::from_request(&req, TransactionRole::Client)
            .map_err(|e| err(e.to_string()))?;
        let mut tx = Transaction::new_client(key, req, self.endpoint.clone(), None);
        tx.destination = Some(self.intercom.clone());
        tx.send().await.map_err(|e| err(e.to_string()))?;
        let mut challenged = false;
        while let Some(msg) = tx.receive().await {
            let SipMessage::Response(resp) = msg else {
                continue;
            };
            if resp.status_code.kind() == StatusCodeKind::Provisional {
                continue;
            }
            let challenge = matches!(
                resp.status_code,
                StatusCode::Unauthorized | StatusCode::ProxyAuthenticationRequired
            );
            if challenge && !challenged && !self.credential.password.is_empty() {
                challenged = true;
                seq += 1;
                tx = handle_client_authenticate(seq, &tx, resp, &self.credential)
                    .await
                    .map_err(|e| err(e.to_string()))?;
                tx.send().await.map_err(|e| err(e.to_string()))?;
                continue;
            }
            return Ok(resp);
        }
        Err(err(format!(
            "{method} transaction ended without a final response"
        )))
    }
}

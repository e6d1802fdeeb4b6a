//! The disclosure announcement as RFC 3960 early media: a leased RTP port, the SDP answer, the
//! destination's claim (no reflection), the 183 through the INVITE's early dialog, and the
//! player with its RFC 4733 objection key (or the same key by SIP INFO).

use std::sync::{Arc, PoisonError};

use bytes::Bytes;
use tokio::net::UdpSocket;
use tracing::debug;

use super::machine::{Media, Played};
use super::shell::Calls;
use super::stats::MediaRefusalLabel;
use crate::call::Cut;
use crate::media::destinations::{Claim, Refused};
use crate::media::wav::Announcement;
use crate::media::{self, LocalMedia, PlayEnd, PortLease};
use crate::sip::edge::{ServerInvite, Stopped};
use crate::sip::uas::Route;

/// Early media ready to play: the port, its socket, the SDP answer and the destination's claim.
pub(super) struct ReadyMedia {
    answer: media::Answer,
    lease: PortLease,
    socket: UdpSocket,
    claim: Claim,
}

impl Calls {
    /// The media address new calls use (read once per call: a reload never moves a call).
    fn media_address(&self) -> std::net::IpAddr {
        *self
            .media
            .address
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a reloaded `[media] address` for calls that start from now on.
    pub fn set_media_address(&self, address: std::net::IpAddr) {
        *self
            .media
            .address
            .write()
            .unwrap_or_else(PoisonError::into_inner) = address;
    }

    /// Takes reloaded `[media] allowed_networks` (or ACL networks) for calls that start from now.
    pub fn set_media_networks(&self, networks: Vec<ipnet::IpNet>) {
        self.media.destinations.replace(networks);
    }

    /// Binds a port and negotiates the INVITE's offer for early media.
    pub(super) async fn set_up_media(&self, invite: &ServerInvite) -> (Media, Option<ReadyMedia>) {
        let req = invite.request();
        // The UAS checks already refused bodies we cannot take; an error here is no offer.
        let offer = crate::sip::body::sdp(req.content_type(), &req.body)
            .ok()
            .flatten();
        let Some(offer) = offer else {
            return (Media::Unusable, None);
        };
        // Read once: a reload between the SDP answer and the bind must not split the call.
        let address = self.media_address();
        let Some((lease, socket)) = self.bind_media(address).await else {
            return (Media::NoPort, None);
        };
        let local = LocalMedia {
            addr: address,
            port: lease.port(),
            session_id: rand::random::<u32>().into(),
        };
        match media::negotiate(&offer, local) {
            Ok(answer) if answer.direction.sends() => match self.claim_destination(&answer, invite)
            {
                Some(claim) => (
                    Media::Ready,
                    Some(ReadyMedia {
                        answer,
                        lease,
                        socket,
                        claim,
                    }),
                ),
                None => (Media::Unusable, None),
            },
            Ok(_) => (Media::Unusable, None),
            Err(err) => {
                debug!(error = %err, "SDP offer refused.");
                (Media::Refused(err.sip_status()), None)
            }
        }
    }

    /// Sends the 183 and plays `announcement`; returns how it ended.
    pub(super) async fn announce(
        &self,
        invite: &ServerInvite,
        route: &Route,
        announcement: Arc<Announcement>,
        ready: ReadyMedia,
    ) -> Played {
        let key = route.plan.objection_digit;
        let ReadyMedia {
            answer,
            lease,
            socket,
            claim,
        } = ready;
        let dialog = invite.early_dialog(move |body| media::dtmf::parse_info(body) == Some(key));
        let sdp = Bytes::from(answer.sdp.clone().into_bytes());
        dialog.progress(Some(sdp.clone())).await;
        let socket = Arc::new(socket);
        let play = media::play(
            socket.clone(),
            answer.remote,
            announcement,
            answer.codec,
            answer.te_pt,
            key,
            invite.stop_token().clone(),
        );
        let outcome = dialog.hold(play, sdp).await;
        let stopped_by = dialog.stopped_by();
        drop(dialog);
        drop(claim);
        self.linger(lease, socket);
        self.metrics.announced(outcome.played);
        self.metrics
            .rtp_foreign_packets
            .inc_by(outcome.foreign_packets);
        let played = crate::call::Seconds::from_duration(outcome.played);
        match outcome.end {
            PlayEnd::Complete => Played::Complete(played),
            PlayEnd::Objected => Played::Cut(Cut::Objected, played),
            PlayEnd::Stopped => Played::Cut(
                match stopped_by {
                    Stopped::Cancelled => Cut::HungUp,
                    Stopped::Info => Cut::Objected,
                    Stopped::Unacknowledged => Cut::Unacknowledged,
                },
                played,
            ),
        }
    }

    /// Whether the announcement may go to the answer's remote address (no reflection, see
    /// `media::destinations`). A refused address makes the call one without usable SDP: the
    /// campaign's `without_sdp` decides (skip: routed without notice; reject: 403), no 183 and
    /// no RTP go out, so a spoofed INVITE gets us to send nothing anywhere but to its source.
    fn claim_destination(&self, answer: &media::Answer, invite: &ServerInvite) -> Option<Claim> {
        let destinations = &self.media.destinations;
        match destinations.claim(answer.remote.ip(), invite.source()) {
            Ok(claim) => Some(claim),
            Err(why) => {
                let reason = match why {
                    Refused::OutsideNetworks => MediaRefusalLabel::OutsideNetworks,
                    Refused::TooManyStreams => MediaRefusalLabel::StreamCap,
                    Refused::TooManyFromSource => MediaRefusalLabel::SourceCap,
                };
                self.metrics.media_refused(reason).inc();
                debug!(error = %why, "No early media: the offer's address was refused.");
                None
            }
        }
    }

    /// Keeps an announcement's port and socket for a while after playback: the caller's RTP
    /// keeps arriving until the carrier has acted on our final response, and a port handed to
    /// the next call too early would feed that stray audio (and key presses) into it. The port
    /// returns to the pool only once its socket is closed.
    fn linger(&self, lease: PortLease, socket: Arc<UdpSocket>) {
        let linger = self.media.linger;
        // Not a call flow: shutdown and the in-flight count do not wait for it.
        tokio::spawn(async move {
            tokio::time::sleep(linger).await;
            drop(socket);
            drop(lease);
        });
    }

    /// A leased RTP port with its socket. A port another process holds is skipped (its lease
    /// goes back to the end of the queue), a few times at most.
    async fn bind_media(&self, address: std::net::IpAddr) -> Option<(PortLease, UdpSocket)> {
        for _ in 0..8 {
            let lease = self.media.ports.acquire()?;
            if let Ok(socket) = UdpSocket::bind((address, lease.port())).await {
                return Some((lease, socket));
            }
        }
        None
    }
}

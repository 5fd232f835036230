"""Call-level failures: each carries a reason from a fixed vocabulary, counted once per call."""

from __future__ import annotations

# The fixed vocabulary of CallRecord.failure_reason.
FAILURE_REASONS = {
    "signaling_unreachable": "the target did not accept a connection",
    "signaling_timeout": "the target did not answer signaling in time",
    "signaling_bad_answer": "the target answered signaling with something that is not an SDP answer",
    "signaling_bad_redirect": "the target redirected signaling where we do not follow "
                              "(not 307/308, a loop, or off the machine from a loopback target)",
    "ice_timeout": "the media connection was not established in time",
    # WebSocket media streams (twilio-ws, pcm-ws); a refused handshake is ws_handshake_http_<code>
    "ws_unreachable": "the WebSocket target did not accept a connection",
    "ws_handshake_timeout": "the WebSocket handshake did not complete in time",
    "ws_tls_error": "the TLS handshake with a wss:// target failed (certificate or protocol)",
    "ws_closed_early": "the agent closed the WebSocket before it said anything",
    "ws_bad_message": "the agent sent something the media stream protocol does not allow",
    "ws_connection_lost": "the WebSocket dropped mid-flow without a close handshake (the "
                          "agent's process or the network died; a hang-up sends a close frame)",
    # SIP; a final error response is sip_<code> (sip_404, sip_486, sip_503, ...)
    "sip_unreachable": "the SIP target refused the datagram (no one listens on that port)",
    "sip_no_answer": "the SIP target did not answer the INVITE in time (no response, or ringing)",
    "sip_auth_failed": "the SIP target rejected our credentials (or asked for some, and none are set)",
    "sip_bad_answer": "the SIP target answered with an SDP we cannot use (no G.711 in common)",
    "stt_unavailable": "the speech-to-text service (speech.stt: openai) failed or did not "
                       "answer in time, so the agent could not be heard",
    "tts_unavailable": "the text-to-speech service (speech.tts: openai) failed or did not "
                       "answer in time, so the caller could not speak",
    "no_agent_audio": "the agent never spoke",
    "media_timeout": "the agent's audio stopped arriving mid-call (no close, no BYE)",
    "remote_hangup_early": "the agent hung up mid-flow, before the caller's goal was met",
    "goal_not_met": "the agent ran its flow to its goodbye without getting every goal fact",
    "caller_gave_up": "the agent left the caller waiting longer than its patience",
    "call_timeout": "the call exceeded its maximum duration",
    "caller_error": "the caller itself failed (a bug: see failure_detail)",
    "caller_host_lost": "the process running the call died",
}


class CallFailed(Exception):
    """Ends a call as failed with one reason from FAILURE_REASONS (or signaling_http_<code>,
    ws_handshake_http_<code>, sip_<code>)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class ConfigError(Exception):
    """A user error in a file or flag: the message is one line naming what and where."""

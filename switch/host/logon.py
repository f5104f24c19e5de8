"""Logon (0800/920000): fresh working keys under the TMK (HOST_SPEC §6).

Every logon rotates the TPK and TAK.  DE 62 carries, in hex: TPK under TMK (16)
+ TPK check value (3) + TAK under TMK (16) + TAK check value (3).
"""

from __future__ import annotations

import logging
import os

import psec.des
from sqlalchemy.orm import Session

from switch.authorize.rules import check_terminal
from switch.host.context import HostContext
from switch.host.facts import load_terminal, terminal_facts
from switch.host.responses import build_response
from switch.protocol import codes
from switch.protocol.message import Message
from switch.security.keys import check_value, unwrap_key, wrap_key

log = logging.getLogger("bpnt.host")


def new_double_length_key() -> bytes:
    key: bytes = psec.des.adjust_key_parity(os.urandom(16))
    return key


def handle_logon(ctx: HostContext, session: Session, request: Message) -> Message:
    keys = ctx.keys
    tid = request.text(41)
    row = load_terminal(session, keys, tid)
    refused = check_terminal(terminal_facts(keys, *row) if row else None, request.text(42))
    if refused or row is None:
        reason = refused.reason if refused else "unknown terminal"
        ctx.audit(session, actor=f"terminal:{tid}", action="refused.logon", subject=tid,
                  reason=reason)
        log.info("logon refused tid=%s: %s", tid, reason)
        return build_response(request, refused.rc if refused else codes.NOT_PERMITTED_TERMINAL)
    terminal = row[0]
    tmk = unwrap_key(keys.kek, terminal.tmk_wrapped, f"TMK:{tid}")
    tpk, tak = new_double_length_key(), new_double_length_key()
    terminal.tpk_wrapped = wrap_key(keys.kek, tpk, f"TPK:{tid}")
    terminal.tak_wrapped = wrap_key(keys.kek, tak, f"TAK:{tid}")
    key_data = (
        psec.des.encrypt_tdes_ecb(tmk, tpk) + check_value(tpk)
        + psec.des.encrypt_tdes_ecb(tmk, tak) + check_value(tak)
    )
    ctx.audit(session, actor=f"terminal:{tid}", action="keys.rotate", subject=tid,
              tpk_kcv=check_value(tpk).hex(), tak_kcv=check_value(tak).hex())
    log.info("logon tid=%s: working keys rotated", tid)
    return build_response(request, codes.APPROVED, key_data=key_data.hex().upper())


def parse_key_data(tmk: bytes, key_data_hex: str) -> tuple[bytes, bytes]:
    """Terminal side: (TPK, TAK) from logon DE 62, check values verified."""
    raw = bytes.fromhex(key_data_hex)
    if len(raw) != 38:
        raise ValueError("logon key data must be 38 bytes")
    tpk = psec.des.decrypt_tdes_ecb(tmk, raw[:16])
    tak = psec.des.decrypt_tdes_ecb(tmk, raw[19:35])
    if check_value(tpk) != raw[16:19] or check_value(tak) != raw[35:38]:
        raise ValueError("logon key check value mismatch")
    return tpk, tak

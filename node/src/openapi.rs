//! The OpenAPI 3.1 document served at `/openapi.json`. Request schemas say
//! exactly what the server accepts: no extra properties where it refuses
//! them, integers within what it reads (u64), a batch's item limit from
//! this node's config.

use crate::config::ApiConfig;
use serde_json::{json, Value};

/// The largest integer the server reads (u64).
const U64_MAX: u64 = u64::MAX;

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn ok(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

pub fn document(api: &ApiConfig) -> Value {
    // What the server writes: lowercase hex.
    let hex = |n: usize| json!({"type": "string", "pattern": format!("^[0-9a-f]{{{}}}$", 2 * n)});
    // What it reads: either case, an optional 0x.
    let hex_in =
        |n: usize| json!({"type": "string", "pattern": format!("^(0x)?[0-9a-fA-F]{{{}}}$", 2 * n)});
    let u64_from = |min: u64| json!({"type": "integer", "minimum": min, "maximum": U64_MAX});
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Phalanx validator API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A Byzantine-fault-tolerant replicated ledger (PBFT). Errors are {\"error\": {\"code\", \"message\"}} with a 4xx or 5xx status."
        },
        "paths": {
            "/v1/transactions": {"post": {
                "summary": "Submit one signed transfer, or a batch as {\"transactions\": [...]}",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"oneOf": [
                    {"$ref": "#/components/schemas/Transaction"},
                    {"type": "object", "additionalProperties": false, "required": ["transactions"], "properties": {"transactions": {
                        "type": "array", "maxItems": api.max_batch_txs, "items": {"$ref": "#/components/schemas/Transaction"}
                    }}}
                ]}}}},
                "responses": {
                    "202": ok("Accepted into the mempool", json!({"type": "object", "required": ["hash", "status"], "properties": {"hash": hex(32), "status": {"const": "pending"}}})),
                    "200": ok("Batch: one result per transaction, in order", json!({"type": "object", "required": ["accepted", "results"], "properties": {
                        "accepted": {"type": "integer", "minimum": 0},
                        "results": {"type": "array", "items": {"oneOf": [
                            {"type": "object", "required": ["hash", "status"], "properties": {"hash": hex(32), "status": {"const": "pending"}}},
                            {"$ref": "#/components/schemas/Error"}
                        ]}}
                    }})),
                    "400": error_response("Malformed JSON, a malformed transaction (in a batch: the whole batch, the message names the item), bad signature, wrong chain id, nonce too far ahead, insufficient_funds, unknown_account, zero_amount, self_transfer"),
                    "408": error_response("The body did not arrive within the request timeout"),
                    "409": error_response("Duplicate, already committed, stale nonce, nonce in use"),
                    "413": error_response("Body, batch or transaction over the limit"),
                    "415": error_response("Content-Type is not application/json"),
                    "429": error_response("This sender's share of the mempool is used up (sender_limit, sender_held_limit)"),
                    "503": error_response("Mempool full, no quorum, catching up, or too many connections")
                }
            }},
            "/v1/transactions/{hash}": {"get": {
                "summary": "Status of a transaction: pending, committed (height, position, result) or unknown. With ?proof=true: Merkle proof, block header and commit certificate",
                "parameters": [
                    {"name": "hash", "in": "path", "required": true, "schema": hex_in(32)},
                    {"name": "proof", "in": "query", "required": false, "schema": {"type": "boolean"}}
                ],
                "responses": {"200": ok("Pending or committed", json!({"type": "object"})), "404": ok("Unknown", json!({"type": "object"})), "400": error_response("Bad hash or query string")}
            }},
            "/v1/accounts/{address}": {"get": {
                "summary": "Balance and next nonce of an account",
                "parameters": [{"name": "address", "in": "path", "required": true, "schema": hex_in(20)}],
                "responses": {"200": ok("The account", json!({"type": "object", "properties": {"address": hex(20), "balance": {"type": "integer"}, "nonce": {"type": "integer"}, "height": {"type": "integer"}}})), "400": error_response("Bad address")}
            }},
            "/v1/blocks/latest": {"get": {"summary": "The latest block with its commit certificate", "responses": {"200": ok("Block", json!({"$ref": "#/components/schemas/Block"})), "404": error_response("No blocks yet")}}},
            "/v1/blocks/{height}": {"get": {
                "summary": "A block by height with its commit certificate",
                "parameters": [{"name": "height", "in": "path", "required": true, "schema": u64_from(1)}],
                "responses": {"200": ok("Block", json!({"$ref": "#/components/schemas/Block"})), "404": error_response("No such block"), "400": error_response("Bad height")}
            }},
            "/v1/validators": {"get": {"summary": "Chain id, genesis hash, f, quorum and the validators", "responses": {"200": ok("Validators", json!({"type": "object"}))}}},
            "/v1/status": {"get": {"summary": "Height, view, primary, peers, mempool, catching up, fail-stop (`fail_stopped`) and degraded state", "responses": {"200": ok("Status", json!({"type": "object"}))}}},
            "/v1/evidence": {"get": {
                "summary": "Equivocation evidence: pairs of conflicting signed messages, one record per (validator, view, phase), the newest 256 per validator kept. Paged in (validator, view, phase) order: pass a page's `next` as `after` to get the following one",
                "parameters": [
                    {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
                    {"name": "after", "in": "query", "required": false, "description": "The `next` of the previous page: <validator hex>.<view>.<phase 0|1|2>", "schema": {"type": "string", "pattern": "^[0-9a-f]{64}\\.[0-9]+\\.[0-2]$"}}
                ],
                "responses": {
                    "200": ok("One page of evidence", json!({"type": "object", "required": ["evidence", "next"], "properties": {
                        "evidence": {"type": "array", "items": {"type": "object", "properties": {
                            "validator": hex(32), "validator_index": {"type": ["integer", "null"]},
                            "phase": {"enum": ["PrePrepare", "Prepare", "Commit"]},
                            "view": {"type": "integer"}, "seq": {"type": "integer"},
                            "first": {"type": "object", "description": "The first signed message"},
                            "second": {"type": "object", "description": "The conflicting signed message"}
                        }}},
                        "next": {"type": ["string", "null"], "description": "`after` for the next page; null on the last page"}
                    }})),
                    "400": error_response("limit outside 1..=1000, or a malformed cursor")
                }
            }},
            "/v1/events": {"get": {"summary": "Server-sent events: one `block` event per new block, keep-alive comments in between; a bounded number of subscribers", "responses": {
                "200": {"description": "Server-sent events (text/event-stream): `event: block`, data a block summary as JSON"},
                "503": error_response("Too many subscribers")
            }}},
            "/health": {"get": {"summary": "Liveness: `ok`, `degraded` (running; something failed, see `reason`) or `fail_stopped`", "responses": {
                "200": ok("Running: status `ok` or `degraded`", json!({"type": "object", "required": ["status"], "properties": {"status": {"enum": ["ok", "degraded"]}}})),
                "503": ok("Fail-stopped: this node's state disagreed with a checkpoint quorum; `reason` says what, `recovery` what the operator should do", json!({"type": "object", "required": ["status"], "properties": {"status": {"const": "fail_stopped"}, "reason": {"type": "string"}, "recovery": {"type": "string"}}}))
            }}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text/plain; version=0.0.4"}}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1"}}}}
        },
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
            "Transaction": {"type": "object", "additionalProperties": false, "required": ["payload", "signer", "signature"], "properties": {
                "payload": {"type": "object", "additionalProperties": false, "required": ["chain_id", "to", "amount", "nonce"], "properties": {
                    "chain_id": {"type": "string"}, "to": hex_in(20), "amount": u64_from(1), "nonce": u64_from(0)
                }},
                "signer": hex_in(32),
                "signature": hex_in(64)
            }, "description": "signature = ed25519(len32le(\"phalanx/transfer/v1\") || \"phalanx/transfer/v1\" || len32le(chain_id) || chain_id || bincode(payload))"},
            "Block": {"type": "object", "properties": {
                "height": {"type": "integer"}, "hash": hex(32), "header": {"type": "object"},
                "transactions": {"type": "array"}, "results": {"type": "array"},
                "certificate": {"type": "object", "description": "For every signature: the validator's public key, the signature and the exact signed bytes (hex)"}
            }}
        }}
    })
}

//! The OpenAPI 3.1 document served at `/openapi.json`.

use serde_json::{json, Value};

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn ok(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

pub fn document() -> Value {
    let hex = |n: usize| json!({"type": "string", "pattern": format!("^[0-9a-f]{{{}}}$", 2 * n)});
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
                    {"type": "object", "properties": {"transactions": {"type": "array", "items": {"$ref": "#/components/schemas/Transaction"}}}, "required": ["transactions"]}
                ]}}}},
                "responses": {
                    "202": ok("Accepted into the mempool", json!({"type": "object", "properties": {"hash": hex(32), "status": {"const": "pending"}}})),
                    "200": ok("Batch: one result per transaction", json!({"type": "object"})),
                    "400": error_response("Malformed JSON or transaction, bad signature, wrong chain id, nonce too far ahead"),
                    "409": error_response("Duplicate, already committed, stale nonce, nonce in use"),
                    "413": error_response("Body, batch or transaction over the limit"),
                    "415": error_response("Content-Type is not application/json"),
                    "503": error_response("Mempool full, no quorum reachable, catching up, or `fail_stopped` (this node's state disagreed with a checkpoint quorum: use another node)")
                }
            }},
            "/v1/transactions/{hash}": {"get": {
                "summary": "Status of a transaction: pending, committed (height, position, result) or unknown. With ?proof=true: Merkle proof, block header and commit certificate",
                "parameters": [
                    {"name": "hash", "in": "path", "required": true, "schema": hex(32)},
                    {"name": "proof", "in": "query", "required": false, "schema": {"type": "boolean"}}
                ],
                "responses": {"200": ok("Pending or committed", json!({"type": "object"})), "404": ok("Unknown", json!({"type": "object"})), "400": error_response("Bad hash"), "503": error_response("`fail_stopped`: this node serves no state")}
            }},
            "/v1/accounts/{address}": {"get": {
                "summary": "Balance and next nonce of an account",
                "parameters": [{"name": "address", "in": "path", "required": true, "schema": hex(20)}],
                "responses": {"200": ok("The account", json!({"type": "object", "properties": {"address": hex(20), "balance": {"type": "integer"}, "nonce": {"type": "integer"}, "pending_nonce": {"type": "integer"}, "height": {"type": "integer"}}})), "400": error_response("Bad address"), "503": error_response("`fail_stopped`: this node's state disagreed with a checkpoint quorum; it serves no balances")}
            }},
            "/v1/blocks/latest": {"get": {"summary": "The latest block with its commit certificate", "responses": {"200": ok("Block", json!({"$ref": "#/components/schemas/Block"})), "404": error_response("No blocks yet"), "503": error_response("`fail_stopped`: this node serves no state")}}},
            "/v1/blocks/{height}": {"get": {
                "summary": "A block by height with its commit certificate",
                "parameters": [{"name": "height", "in": "path", "required": true, "schema": {"type": "integer", "minimum": 1}}],
                "responses": {"200": ok("Block", json!({"$ref": "#/components/schemas/Block"})), "404": error_response("No such block"), "400": error_response("Bad height"), "503": error_response("`fail_stopped`: this node serves no state")}
            }},
            "/v1/validators": {"get": {"summary": "Chain id, genesis hash, f, quorum and the validators", "responses": {"200": ok("Validators", json!({"type": "object"}))}}},
            "/v1/status": {"get": {"summary": "Height, view, primary, peers, mempool, catching up, fail-stop and degraded state", "responses": {"200": ok("Status", json!({"$ref": "#/components/schemas/Status"}))}}},
            "/v1/evidence": {"get": {"summary": "Equivocation evidence: pairs of conflicting signed messages", "responses": {"200": ok("Evidence", json!({"type": "object"}))}}},
            "/v1/events": {"get": {"summary": "Server-sent events: one `block` event per new block", "responses": {"200": {"description": "text/event-stream"}}}},
            "/health": {"get": {"summary": "Liveness: `ok`, `degraded` (running; something failed, see `reason`) or `fail_stopped`", "responses": {
                "200": ok("Running: status `ok` or `degraded`", json!({"$ref": "#/components/schemas/Health"})),
                "503": ok("Fail-stopped: this node's state disagreed with a checkpoint quorum; `reason` says what, `recovery` what the operator should do", json!({"$ref": "#/components/schemas/Health"}))
            }}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text/plain; version=0.0.4"}}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1"}}}}
        },
        "components": {"schemas": {
            "FailStop": {"type": "object", "required": ["reason", "seq", "since_ms", "recovery"], "properties": {
                "reason": {"type": "string"}, "seq": {"type": "integer", "description": "The checkpoint at which the state differed"},
                "since_ms": {"type": "integer", "description": "Unix time, milliseconds"}, "recovery": {"type": "string", "description": "What the operator should do"}
            }},
            "Degraded": {"type": "object", "required": ["reason", "since_ms"], "properties": {
                "reason": {"type": "string"}, "since_ms": {"type": "integer", "description": "Unix time, milliseconds"}
            }},
            "Status": {"type": "object", "properties": {
                "chain_id": {"type": "string"}, "validator_index": {"type": "integer"}, "validator_key": hex(32),
                "height": {"type": "integer"}, "last_block_hash": hex(32), "view": {"type": "integer"}, "primary": {"type": "integer"},
                "view_changing": {"type": "boolean"}, "catching_up": {"type": "boolean"}, "blocks_behind": {"type": "integer"},
                "peers_connected": {"type": "integer"}, "mempool_txs": {"type": "integer"}, "mempool_bytes": {"type": "integer"},
                "mempool_held": {"type": "integer"}, "behaviour": {"type": ["string", "null"]},
                "fail_stopped": {"oneOf": [{"$ref": "#/components/schemas/FailStop"}, {"type": "null"}], "description": "Set once the node stopped on a state divergence"},
                "degraded": {"oneOf": [{"$ref": "#/components/schemas/Degraded"}, {"type": "null"}], "description": "Set when something failed that did not stop the node"}
            }},
            "Health": {"type": "object", "required": ["status", "height", "peers_connected"], "properties": {
                "status": {"enum": ["ok", "degraded", "fail_stopped"]}, "height": {"type": "integer"}, "peers_connected": {"type": "integer"},
                "reason": {"type": "string"}, "seq": {"type": "integer"}, "since_ms": {"type": "integer"}, "recovery": {"type": "string"}
            }},
            "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
            "Transaction": {"type": "object", "required": ["payload", "signer", "signature"], "properties": {
                "payload": {"type": "object", "required": ["chain_id", "to", "amount", "nonce"], "properties": {
                    "chain_id": {"type": "string"}, "to": hex(20), "amount": {"type": "integer", "minimum": 1}, "nonce": {"type": "integer", "minimum": 0}
                }},
                "signer": hex(32),
                "signature": hex(64)
            }, "description": "signature = ed25519(len32le(\"phalanx/transfer/v1\") || \"phalanx/transfer/v1\" || len32le(chain_id) || chain_id || bincode(payload))"},
            "Block": {"type": "object", "properties": {
                "height": {"type": "integer"}, "hash": hex(32), "header": {"type": "object"},
                "transactions": {"type": "array"}, "results": {"type": "array"},
                "certificate": {"type": "object", "description": "For every signature: the validator's public key, the signature and the exact signed bytes (hex)"}
            }}
        }}
    })
}

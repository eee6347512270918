"""pow-mcp as an OAuth 2.1 resource server, as the MCP authorization specification describes.

With POW_MCP_OAUTH_ISSUER set, start-up reads the issuer's metadata (RFC 8414, or OpenID
discovery) for its keys and introspection endpoint, and fetches the keys: a server that
cannot is not started. Every HTTP request then needs an access token from that issuer for
this server (`aud` = POW_MCP_RESOURCE_URL): a JWT, checked here against the issuer's keys,
or an opaque token that the issuer's introspection endpoint (RFC 7662) vouches for. Its
scopes say what it may do (pow:read, pow:write; the admin scope: every principal's jobs).
Clients find the issuer through the protected-resource metadata (RFC 9728).

No token, client secret or key is ever put in a log line or an error: reasons are fixed
texts, and what came from a request is named only by its key id.
"""

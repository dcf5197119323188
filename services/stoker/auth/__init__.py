"""Who may call stoker: stoker tokens (made, listed, revoked, checked), over the token store."""

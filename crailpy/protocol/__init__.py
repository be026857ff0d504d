"""The crailpy wire protocol: message types, their codec and framing. No I/O here."""

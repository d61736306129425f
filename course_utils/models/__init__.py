"""Where the course's models come from, in one package:

- registry: the lessons' short names ("sd15", "ddpm-cat", ...) and their current hub repos;
- resolve: the local folder for a name: the hub cache, a download through the endpoint, or a stand-in;
- emoji: the course's own trained emoji models shipped in data/models (smoke mode's stand-ins);
- standins: small random-weight models of the real architectures, saved in the hub repos' layout;
- architectures: the configs those models are built from."""

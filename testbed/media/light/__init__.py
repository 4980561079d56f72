"""The light call endpoint's engine (``testbed.media.endpoints.rtp``): every RTP stream of a node sent by
one thread in ``sendmmsg`` batches (:mod:`.streams`, :mod:`.mmsg`), whole IPv4/UDP/RTP datagrams and
RTCP reports (:mod:`.packets`), and what it keeps per stream (:mod:`.legs`)."""

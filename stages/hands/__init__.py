"""Hands: detection and tracking (MediaPipe), the hands row layout (:mod:`stages.hands.rows`),
and our HaMeR network (:mod:`stages.hands.hamer`) that loads the official checkpoint without
running its pickle. Used by the hand-captions and features stages. Nothing is imported here:
torch and MediaPipe load only when a stage that needs them runs."""

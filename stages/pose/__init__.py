"""Pose: whole-body landmarks of the signer for the features stage's ``pose`` feature.

One person per clip, in MediaPipe Holistic's point order (:mod:`stages.pose.points`): the body's
33 points, the person's left and right hands (21 each) and optionally a face-mesh subset, stored
per selected frame as ``pose.npy`` and ``pose_conf.npy`` (:mod:`stages.pose.encoder`); who that
person is when several are visible is decided by :mod:`stages.pose.signer`; the landmarks come
from MediaPipe Holistic or from COCO-WholeBody keypoints made elsewhere
(:mod:`stages.pose.detect`), optionally normalised to the shoulders
(:mod:`stages.pose.normalise`), and optionally written as pose-format ``.pose`` files
(:mod:`stages.pose.pose_files`). Nothing is imported here: MediaPipe loads only when needed.
"""

"""EBS snapshots: DescribeSnapshots, DeleteSnapshot, ModifySnapshotAttribute, CreateSnapshot."""

from __future__ import annotations

from typing import Any

from moto.core.responses import ActionResult, EmptyResult
from moto.ec2.models.elastic_block_store import EBSBackend
from moto.ec2.responses.elastic_block_store import ElasticBlockStore

from .common import ClientError, one_page, snapshot_ids_of
from .recycle_bin import bin_snapshot


# DescribeSnapshots ({REF}/API_DescribeSnapshots.html): OwnerIds (an id, `self` or `amazon`)
# limits the result to those owners; MaxResults pages it with NextToken.
def describe_snapshots(self: Any) -> ActionResult:
    backend = self.ec2_backend
    snaps = backend.describe_snapshots(
        snapshot_ids=self._get_param("SnapshotIds", []), filters=self._filters_from_querystring()
    )
    owners = self._get_param("OwnerIds", [])
    if owners:
        wanted = {backend.account_id if o == "self" else o for o in owners}
        snaps = [s for s in snaps if s.owner_id in wanted]
    page, token = one_page(self, sorted(snaps, key=lambda s: s.id))
    result: dict[str, Any] = {"Snapshots": page}
    if token:
        result["NextToken"] = token
    return ActionResult(result)


# DeleteSnapshot ({REF}/API_DeleteSnapshot.html): "You cannot delete a snapshot of the root
# device of an EBS volume used by a registered AMI" - InvalidSnapshot.InUse for any snapshot a
# registered image (in any state, disabled included) uses, not only the one CreateImage made.
_moto_delete_snapshot = EBSBackend.delete_snapshot


def delete_snapshot(self: Any, snapshot_id: str) -> Any:
    for ami in self.amis.values():
        if snapshot_id in snapshot_ids_of(ami):
            raise ClientError("InvalidSnapshot.InUse", f"The snapshot {snapshot_id} is currently in use by {ami.id}")
    snap = self.snapshots.get(snapshot_id)
    if snap is not None:
        bin_snapshot(self, snap)
    return _moto_delete_snapshot(self, snapshot_id)


# ModifySnapshotAttribute ({REF}/API_ModifySnapshotAttribute.html): the structured
# CreateVolumePermission {Add: [...], Remove: [...]} form applies (moto honours only the flat
# OperationType + UserIds form and silently ignores this one).
_moto_modify_snapshot_attribute = ElasticBlockStore.modify_snapshot_attribute


def modify_snapshot_attribute(self: Any) -> Any:
    structured = self._get_param("CreateVolumePermission") or {}
    if not structured:
        return _moto_modify_snapshot_attribute(self)
    snapshot_id = self._get_param("SnapshotId")
    self.error_on_dryrun()
    for op, perms in (("add", structured.get("Add", [])), ("remove", structured.get("Remove", []))):
        users = [p["UserId"] for p in perms if p.get("UserId")]
        groups = [p["Group"] for p in perms if p.get("Group")]
        for user in users:
            if len(user) != 12 or not user.isdigit():
                raise ClientError("InvalidParameterValue", f"Invalid user id: {user}")
        if op == "add":
            self.ec2_backend.add_create_volume_permission(snapshot_id, user_ids=users, groups=groups)
        else:
            self.ec2_backend.remove_create_volume_permission(snapshot_id, user_ids=users, groups=groups)
    return EmptyResult()


# CreateSnapshot ({REF}/API_CreateSnapshot.html): "Snapshots that are taken from encrypted
# volumes are automatically encrypted" with the volume's KMS key, which DescribeSnapshots
# reports as KmsKeyId; moto drops the key.
_moto_create_snapshot = EBSBackend.create_snapshot


def create_snapshot(self: Any, volume_id: str, *args: Any, **kwargs: Any) -> Any:
    snapshot = _moto_create_snapshot(self, volume_id, *args, **kwargs)
    volume = self.get_volume(volume_id)
    if volume.encrypted and not snapshot.kms_key_id:
        snapshot.kms_key_id = volume.kms_key_id
    return snapshot


def patch() -> None:
    """Puts this section's behaviours in place of moto's."""
    EBSBackend.create_snapshot = create_snapshot
    ElasticBlockStore.modify_snapshot_attribute = modify_snapshot_attribute
    ElasticBlockStore.describe_snapshots = describe_snapshots
    EBSBackend.delete_snapshot = delete_snapshot

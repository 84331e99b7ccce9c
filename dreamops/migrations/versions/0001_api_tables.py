"""api tables

Revision ID: 0001
Revises: 
Create Date: 2026-11-21 15:40:02.646033
"""
from alembic import op
import sqlalchemy as sa
import dreamops.db


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_audit',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('at', dreamops.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('api_tokens',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', dreamops.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('deployments',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('model', sa.String(length=256), nullable=False),
    sa.Column('version', sa.String(length=16), nullable=False),
    sa.Column('baseline_version', sa.String(length=16), nullable=True),
    sa.Column('warehouse_id', sa.String(length=64), nullable=True),
    sa.Column('robot_ids', sa.JSON(), nullable=True),
    sa.Column('stages', sa.JSON(), nullable=False),
    sa.Column('stage_index', sa.Integer(), nullable=False),
    sa.Column('stage_started_at', dreamops.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('policy', sa.JSON(), nullable=False),
    sa.Column('statistics', sa.JSON(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('breach_at', dreamops.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ended_at', dreamops.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('rollback_seconds', sa.Double(), nullable=True),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.Column('created_at', dreamops.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', dreamops.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('deployments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_deployments_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_deployments_warehouse_id'), ['warehouse_id'], unique=False)

    op.create_table('robots',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('warehouse_id', sa.String(length=64), nullable=False),
    sa.Column('last_seen', dreamops.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('running_version', sa.String(length=16), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('robots', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_robots_warehouse_id'), ['warehouse_id'], unique=False)

    op.create_table('telemetry_episodes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('robot_id', sa.String(length=64), nullable=False),
    sa.Column('warehouse_id', sa.String(length=64), nullable=False),
    sa.Column('version', sa.String(length=16), nullable=False),
    sa.Column('deployment_id', sa.String(length=32), nullable=True),
    sa.Column('arm', sa.String(length=16), nullable=True),
    sa.Column('stage_index', sa.Integer(), nullable=True),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('reward', sa.Double(), nullable=False),
    sa.Column('collisions', sa.Integer(), nullable=False),
    sa.Column('steps', sa.Integer(), nullable=False),
    sa.Column('latency_p50_ms', sa.Double(), nullable=False),
    sa.Column('latency_p99_ms', sa.Double(), nullable=False),
    sa.Column('ended_at', dreamops.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('received_at', dreamops.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('latents', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('telemetry_episodes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_telemetry_episodes_deployment_id'), ['deployment_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_telemetry_episodes_robot_id'), ['robot_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_telemetry_episodes_warehouse_id'), ['warehouse_id'], unique=False)

    op.create_table('training_jobs',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('warehouse_id', sa.String(length=64), nullable=False),
    sa.Column('agent', sa.String(length=64), nullable=False),
    sa.Column('profile', sa.String(length=16), nullable=False),
    sa.Column('data_window_hours', sa.Double(), nullable=True),
    sa.Column('idempotency_key', sa.String(length=128), nullable=True),
    sa.Column('flow_run_id', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('requested_by', sa.String(length=128), nullable=False),
    sa.Column('version', sa.String(length=16), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', dreamops.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', dreamops.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('idempotency_key')
    )
    with op.batch_alter_table('training_jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_training_jobs_warehouse_id'), ['warehouse_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('training_jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_training_jobs_warehouse_id'))

    op.drop_table('training_jobs')
    with op.batch_alter_table('telemetry_episodes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_telemetry_episodes_warehouse_id'))
        batch_op.drop_index(batch_op.f('ix_telemetry_episodes_robot_id'))
        batch_op.drop_index(batch_op.f('ix_telemetry_episodes_deployment_id'))

    op.drop_table('telemetry_episodes')
    with op.batch_alter_table('robots', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_robots_warehouse_id'))

    op.drop_table('robots')
    with op.batch_alter_table('deployments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_deployments_warehouse_id'))
        batch_op.drop_index(batch_op.f('ix_deployments_status'))

    op.drop_table('deployments')
    op.drop_table('api_tokens')
    op.drop_table('api_audit')

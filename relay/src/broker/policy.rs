//! Who may see and do what. Pure functions over the caller's identity and the target's
//! organisations, so the rules are tested without sockets or a database.
//!
//! - Engineers reach agents of organisations that name the engineer's organisation in
//!   their `supported_by` list, and nothing else.
//! - Approvers and admins answer and end sessions on agents of their own organisation.
//! - Admins of the operator organisation (created at first start) see and end everything;
//!   they do not answer requests: consent belongs to the customer.
//! - Auditors read sessions that concern their organisation.

use crate::store::OrgRow;
use assist_proto::caps::Role;
use assist_proto::ids::{OrgName, UserName};
use assist_proto::msg::SessionInfo;

/// The organisation of the relay's operators, created at first start.
pub const OPERATOR_ORG: &str = "operator";

/// An authenticated user, from a verified token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub user: UserName,
    pub org: OrgName,
    pub role: Role,
}

impl Principal {
    pub fn is_operator(&self) -> bool {
        self.role == Role::Admin && self.org.as_str() == OPERATOR_ORG
    }

    /// May this engineer request sessions on agents of `agent_org`?
    pub fn may_request_on(&self, agent_org: &OrgRow) -> bool {
        self.role == Role::Engineer && agent_org.supported_by.contains(&self.org)
    }

    /// May this user see that an agent of `agent_org` exists?
    pub fn may_see_agent(&self, agent_org: &OrgRow) -> bool {
        self.is_operator()
            || match self.role {
                Role::Engineer => self.may_request_on(agent_org),
                Role::Approver | Role::Auditor | Role::Admin => self.org == agent_org.name,
            }
    }

    /// May this user approve or deny requests for agents of `agent_org`?
    pub fn may_answer_for(&self, agent_org: &OrgName) -> bool {
        matches!(self.role, Role::Approver | Role::Admin) && &self.org == agent_org
    }

    /// May this user end the session?
    pub fn may_end(&self, s: &SessionInfo) -> bool {
        self.is_operator() || self.may_answer_for(&s.agent_org) || self.user == s.engineer
    }

    /// May this user watch the live session read-only? Approvers and admins of the agent's
    /// organisation, and the operator's admins; never the engineer as a watcher.
    pub fn may_watch(&self, s: &SessionInfo) -> bool {
        self.is_operator() || self.may_answer_for(&s.agent_org)
    }

    /// May this user see the session in listings?
    pub fn may_see_session(&self, s: &SessionInfo) -> bool {
        self.is_operator()
            || match self.role {
                Role::Engineer => self.org == s.engineer_org,
                Role::Approver | Role::Auditor | Role::Admin => {
                    self.org == s.agent_org || self.org == s.engineer_org
                }
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use assist_proto::caps::{Capability, Priority};
    use assist_proto::session::SessionState;

    fn p(user: &str, org: &str, role: Role) -> Principal {
        Principal { user: user.into(), org: org.into(), role }
    }

    fn org(name: &str, supported_by: &[&str]) -> OrgRow {
        OrgRow {
            name: name.into(),
            supported_by: supported_by.iter().map(|s| (*s).into()).collect(),
            created_at: 0,
        }
    }

    fn session() -> SessionInfo {
        SessionInfo {
            id: "s".into(),
            engineer: "alice".into(),
            engineer_org: "vendor".into(),
            agent: "erp".into(),
            agent_org: "acme".into(),
            ticket: "T".into(),
            priority: Priority::P2,
            reason: "r".into(),
            capabilities: vec![Capability::Shell],
            state: SessionState::Requested,
            approver: None,
            requested_at: 0,
            consent_deadline: 0,
            decided_at: None,
            started_at: None,
            ended_at: None,
            end_reason: None,
            duration_secs: 3600,
            granted: None,
            grant_expires_at: None,
            escalation: None,
        }
    }

    #[test]
    fn engineers_reach_only_supported_orgs() {
        let alice = p("alice", "vendor", Role::Engineer);
        assert!(alice.may_request_on(&org("acme", &["vendor"])));
        assert!(!alice.may_request_on(&org("globex", &["othervendor"])));
        assert!(
            !alice.may_request_on(&org("vendor", &[])),
            "not even their own org's agents unless supported"
        );
        assert!(!p("bob", "vendor", Role::Approver).may_request_on(&org("acme", &["vendor"])));
    }

    #[test]
    fn approvers_answer_only_for_their_org() {
        assert!(p("bob", "acme", Role::Approver).may_answer_for(&"acme".into()));
        assert!(!p("eve", "globex", Role::Approver).may_answer_for(&"acme".into()));
        assert!(!p("alice", "acme", Role::Engineer).may_answer_for(&"acme".into()));
        assert!(!p("aud", "acme", Role::Auditor).may_answer_for(&"acme".into()));
        assert!(!p("root", OPERATOR_ORG, Role::Admin).may_answer_for(&"acme".into()));
    }

    #[test]
    fn ending_and_seeing_sessions() {
        let s = session();
        assert!(p("alice", "vendor", Role::Engineer).may_end(&s));
        assert!(!p("mallory", "vendor", Role::Engineer).may_end(&s));
        assert!(p("bob", "acme", Role::Approver).may_end(&s));
        assert!(p("root", OPERATOR_ORG, Role::Admin).may_end(&s));
        assert!(!p("eve", "globex", Role::Admin).may_end(&s));
        assert!(p("aud", "acme", Role::Auditor).may_see_session(&s));
        assert!(!p("aud", "globex", Role::Auditor).may_see_session(&s));
        assert!(p("carol", "vendor", Role::Engineer).may_see_session(&s));
        assert!(!p("dave", "other", Role::Engineer).may_see_session(&s));
    }
}

//! `keel vm agent VMID`: the guest agent's state and what it reports (docs/guest-agent.md).

use anyhow::Result;
use keel_api::agent::{AgentState, GuestAgentInfo};

use crate::client::{typed, Client};
use crate::output;

pub async fn show(c: &Client, node: &str, vmid: u32, json: bool) -> Result<()> {
    let id = vmid.to_string();
    let v = c.get(&["nodes", node, "vms", &id, "agent"], &[]).await?;
    if json {
        output::print_json(&v);
    } else {
        let i: GuestAgentInfo = typed(v)?;
        print!("{}", render(&i));
    }
    Ok(())
}

/// The agent as text: its state, then host name, OS and one line per address.
pub fn render(i: &GuestAgentInfo) -> String {
    let mut out = format!("agent:     {} ({})\n", i.state.as_str(), i.message);
    if i.state != AgentState::Ok {
        return out;
    }
    if let Some(h) = &i.hostname {
        out.push_str(&format!("host name: {h}\n"));
    }
    if let Some(os) = &i.os {
        let name = os
            .pretty_name
            .clone()
            .or_else(|| os.name.clone())
            .unwrap_or_else(|| "-".into());
        let kernel = os
            .kernel_release
            .as_deref()
            .map(|k| format!(", kernel {k}"))
            .unwrap_or_default();
        out.push_str(&format!("os:        {name}{kernel}\n"));
    }
    for iface in &i.interfaces {
        let mac = iface.mac.as_deref().unwrap_or("-");
        if iface.addresses.is_empty() {
            out.push_str(&format!("{:<10} {mac}\n", iface.name));
        }
        for a in &iface.addresses {
            out.push_str(&format!(
                "{:<10} {mac}  {}/{}\n",
                iface.name, a.address, a.prefix
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_api::agent::{GuestAddress, GuestInterface, GuestOs};

    #[test]
    fn renders_state_and_addresses() {
        let mut i = GuestAgentInfo {
            vmid: 100,
            state: AgentState::NoChannel,
            message: "VM 100 has no guest agent channel".into(),
            hostname: None,
            os: None,
            interfaces: Vec::new(),
        };
        assert_eq!(
            render(&i),
            "agent:     no-channel (VM 100 has no guest agent channel)\n"
        );
        i.state = AgentState::Ok;
        i.message = "the guest agent answers".into();
        i.hostname = Some("web1".into());
        i.os = Some(GuestOs {
            pretty_name: Some("Debian GNU/Linux 12 (bookworm)".into()),
            kernel_release: Some("6.1.0-57-amd64".into()),
            ..GuestOs::default()
        });
        i.interfaces = vec![GuestInterface {
            name: "eth0".into(),
            mac: Some("52:54:00:12:34:56".into()),
            addresses: vec![GuestAddress {
                family: "ipv4".into(),
                address: "192.0.2.15".into(),
                prefix: 24,
            }],
        }];
        let r = render(&i);
        assert!(r.contains("host name: web1\n"), "{r}");
        assert!(
            r.contains("os:        Debian GNU/Linux 12 (bookworm), kernel 6.1.0-57-amd64\n"),
            "{r}"
        );
        assert!(
            r.contains("eth0       52:54:00:12:34:56  192.0.2.15/24\n"),
            "{r}"
        );
    }
}
